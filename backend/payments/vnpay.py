"""VNPay payment URL API, version 2.1.0: building signed payment URLs and reading callbacks.

The signature is VNPay's: HMAC-SHA512 with the merchant's hash secret over the query string of
the `vnp_*` parameters sorted by name, each value URL-encoded as `quote_plus` does (as VNPay's
reference implementations build it), without `vnp_SecureHash` / `vnp_SecureHashType`; the hex
digest travels as `vnp_SecureHash`. VNPay amounts are VND x 100; its timestamps are
`yyyyMMddHHmmss` in GMT+7.

The built-in sandbox (backend/payments/sandbox.py) signs its callbacks the same way, so one
parser serves both.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote_plus

from backend.payments.gateway import (
    GatewayCallback,
    InvalidSignature,
    MalformedCallback,
    PaymentGateway,
    PaymentRequest,
)

VERSION = "2.1.0"
GMT7 = timezone(timedelta(hours=7))
HASH_FIELDS = ("vnp_SecureHash", "vnp_SecureHashType")
TIME_FORMAT = "%Y%m%d%H%M%S"
ORDER_INFO_MAX = 255
_AMOUNT_RE = re.compile(r"^[0-9]{1,18}$")
_TIME_RE = re.compile(r"^[0-9]{14}$")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9 ]+")


def format_time(moment: datetime) -> str:
    """A UTC-aware instant as VNPay writes time: yyyyMMddHHmmss in GMT+7."""
    return moment.astimezone(GMT7).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime | None:
    """VNPay's yyyyMMddHHmmss (GMT+7) as a UTC-aware datetime; None if it is not one."""
    if not _TIME_RE.match(text):
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=GMT7).astimezone(UTC)
    except ValueError:
        return None


def plain_order_info(text: str) -> str:
    """`text` as VNPay wants vnp_OrderInfo: Vietnamese without diacritics, no special characters."""
    folded = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    ascii_only = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(_NOT_PLAIN.sub(" ", ascii_only).split())[:ORDER_INFO_MAX]


def hash_data(params: Mapping[str, str], *, skip_empty: bool = False) -> str:
    """The string VNPay signs: sorted `vnp_*` parameters as `name=quote_plus(value)` joined by '&'."""
    return "&".join(
        f"{name}={quote_plus(str(value))}"
        for name, value in sorted(params.items())
        if name.startswith("vnp_") and name not in HASH_FIELDS and not (skip_empty and value == "")
    )


def signature(params: Mapping[str, str], secret: bytes) -> str:
    """The lowercase hex HMAC-SHA512 of `hash_data(params)`."""
    return hmac.new(secret, hash_data(params).encode("utf-8"), hashlib.sha512).hexdigest()


def signed(params: Mapping[str, str], secret: bytes) -> dict[str, str]:
    """`params` with its `vnp_SecureHash` added."""
    return {**params, "vnp_SecureHash": signature(params, secret)}


def has_valid_signature(params: Mapping[str, str], secret: bytes) -> bool:
    """Whether `vnp_SecureHash` signs these parameters, compared in constant time.

    VNPay's reference implementations disagree on empty values (the Python and PHP ones sign
    `name=`, the Java one leaves the parameter out), so both readings are accepted; either way
    the digest can only come from someone holding the secret.
    """
    given = str(params.get("vnp_SecureHash", "")).strip().lower()
    if not given:
        return False
    for skip_empty in (False, True):
        try:
            data = hash_data(params, skip_empty=skip_empty).encode("utf-8")
        except UnicodeError:  # e.g. a lone surrogate decoded from malformed percent-encoding
            return False
        expected = hmac.new(secret, data, hashlib.sha512).hexdigest()
        if hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
            return True
    return False


def read_callback(gateway: str, params: Mapping[str, str], secret: bytes) -> GatewayCallback:
    """Verify a VNPay-style callback (IPN or return) and read its fields.

    Raises InvalidSignature or MalformedCallback (see PaymentGateway.parse_callback).
    """
    if not has_valid_signature(params, secret):
        raise InvalidSignature("the callback's vnp_SecureHash does not match")
    vnp = {name: str(value) for name, value in params.items() if name.startswith("vnp_")}
    txn_ref = vnp.get("vnp_TxnRef", "")
    response_code = vnp.get("vnp_ResponseCode", "")
    if not txn_ref or not response_code:
        raise MalformedCallback("vnp_TxnRef and vnp_ResponseCode are required")
    raw_amount = vnp.get("vnp_Amount", "")
    amount: int | None = None
    if _AMOUNT_RE.match(raw_amount) and int(raw_amount) % 100 == 0:
        amount = int(raw_amount) // 100
    return GatewayCallback(
        gateway=gateway,
        txn_ref=txn_ref,
        amount=amount,
        response_code=response_code,
        # The IPN carries both; vnp_TransactionStatus is the one VNPay calls authoritative.
        transaction_status=vnp.get("vnp_TransactionStatus", response_code),
        gateway_txn_no=vnp.get("vnp_TransactionNo", ""),
        bank_code=vnp.get("vnp_BankCode") or None,
        pay_date=parse_time(vnp.get("vnp_PayDate", "")),
        raw=vnp,
    )


class VnpayGateway(PaymentGateway):
    """The real VNPay (sandbox.vnpayment.vn or production, as VNPAY_PAYMENT_URL says)."""

    name = "vnpay"

    def __init__(self, tmn_code: str, hash_secret: str, payment_url: str, return_url: str) -> None:
        self.tmn_code = tmn_code
        self._secret = hash_secret.encode("utf-8")
        self.base_url = payment_url
        self.return_url = return_url

    def __repr__(self) -> str:  # never show the secret
        return f"VnpayGateway(tmn_code={self.tmn_code!r}, payment_url={self.base_url!r})"

    def request_params(self, request: PaymentRequest) -> dict[str, str]:
        """The unsigned vnp_* parameters of the payment URL for `request`."""
        return {
            "vnp_Version": VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self.tmn_code,
            "vnp_Amount": str(request.amount * 100),
            "vnp_CurrCode": "VND",
            "vnp_TxnRef": request.txn_ref,
            "vnp_OrderInfo": plain_order_info(request.order_info),
            "vnp_OrderType": "billpayment",
            "vnp_Locale": "en" if request.locale == "en" else "vn",
            "vnp_ReturnUrl": self.return_url,
            "vnp_IpAddr": request.client_ip,
            "vnp_CreateDate": format_time(request.created_at),
            "vnp_ExpireDate": format_time(request.expires_at),
        }

    def payment_url(self, request: PaymentRequest) -> str:
        params = self.request_params(request)
        query = hash_data(params)
        return f"{self.base_url}?{query}&vnp_SecureHash={signature(params, self._secret)}"

    def parse_callback(self, params: Mapping[str, str]) -> GatewayCallback:
        callback = read_callback(self.name, params, self._secret)
        terminal = callback.raw.get("vnp_TmnCode")
        if terminal is not None and terminal != self.tmn_code:
            raise MalformedCallback("the callback is for another merchant code")
        return callback
