"""The built-in sandbox gateway: pay without a bank, over the same protocol as VNPay.

Its payment URL is a page of this service (`/payments/sandbox/{txn_ref}`, served by
bot/payments_web.py) that shows what is being paid and offers "Pay" and "Cancel". Each button
posts back a set of callback parameters the sandbox signed when it drew the page; the page
handler checks that signature, calls our own IPN endpoint over HTTP exactly as VNPay's server
would (a GET with the signed `vnp_*` parameters), then sends the browser to the return URL
with the same parameters. So the IPN, the return page and everything behind them run the same
code with the sandbox as with VNPay; only the secret differs.

No money moves. The secret is SANDBOX_PAYMENT_SECRET, or a random one per process, which is
enough for one process but not for several workers behind one address.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from backend.payments import vnpay
from backend.payments.gateway import (
    RESPONSE_CANCELLED,
    RESPONSE_SUCCESS,
    GatewayCallback,
    PaymentGateway,
    PaymentRequest,
)

SANDBOX_TMN_CODE = "SANDBOX1"
SANDBOX_BANK_CODE = "NCB"
PAGE_PATH = "/payments/sandbox/"

Outcome = Literal["pay", "cancel"]


class SandboxGateway(PaymentGateway):
    """A stand-in for VNPay that pays on a button press; see the module docstring."""

    name = "sandbox"

    def __init__(self, public_base_url: str, return_url: str, secret: str | None = None) -> None:
        self.public_base_url = public_base_url.rstrip("/")
        self.return_url = return_url
        self._secret = (secret or secrets.token_hex(32)).encode("utf-8")

    def __repr__(self) -> str:  # never show the secret
        return f"SandboxGateway(public_base_url={self.public_base_url!r})"

    def payment_url(self, request: PaymentRequest) -> str:
        return f"{self.public_base_url}{PAGE_PATH}{request.txn_ref}"

    def parse_callback(self, params: Mapping[str, str]) -> GatewayCallback:
        return vnpay.read_callback(self.name, params, self._secret)

    def has_valid_signature(self, params: Mapping[str, str]) -> bool:
        """Whether these parameters were signed by this sandbox (e.g. a posted button)."""
        return vnpay.has_valid_signature(params, self._secret)

    def outcome_params(
        self, txn_ref: str, amount: int, order_info: str, outcome: Outcome, now: datetime
    ) -> dict[str, str]:
        """The signed callback VNPay would send once the customer paid or cancelled `txn_ref`.

        A cancelled transaction carries response code 24, transaction status 02 ("not
        completed") and transaction number 0, as VNPay's do.
        """
        paid = outcome == "pay"
        code = RESPONSE_SUCCESS if paid else RESPONSE_CANCELLED
        params = {
            "vnp_Amount": str(amount * 100),
            "vnp_OrderInfo": vnpay.plain_order_info(order_info),
            "vnp_PayDate": vnpay.format_time(now),
            "vnp_ResponseCode": code,
            "vnp_TmnCode": SANDBOX_TMN_CODE,
            # 8 digits like VNPay's, random so that a sandbox payment is unique per gateway.
            "vnp_TransactionNo": str(10_000_000 + secrets.randbelow(90_000_000)) if paid else "0",
            "vnp_TransactionStatus": code if paid else "02",
            "vnp_TxnRef": txn_ref,
        }
        if paid:
            params |= {"vnp_BankCode": SANDBOX_BANK_CODE, "vnp_CardType": "ATM"}
        return vnpay.signed(params, self._secret)
