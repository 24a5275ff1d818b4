"""What the payment services need from a payment gateway, whichever one is configured.

A gateway does two things for us: it turns a payment link into the URL the customer opens to
pay, and it checks and reads the callbacks it later sends (the server-to-server IPN and the
browser's return), refusing any whose signature is not its own. Amounts cross this interface in
whole VND; gateway-specific encodings (VNPay's "VND x 100", its GMT+7 timestamps) stay inside
the adapters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Locale = Literal["vi", "en"]

# VNPay's result codes, which the sandbox uses as well.
RESPONSE_SUCCESS = "00"
RESPONSE_CANCELLED = "24"


class CallbackError(ValueError):
    """A callback that cannot be trusted or read."""


class InvalidSignature(CallbackError):
    """The callback is not signed with this gateway's secret (or was altered on the way)."""


class MalformedCallback(CallbackError):
    """The signature is valid but a field the contract requires is missing or unreadable."""


@dataclass(frozen=True)
class PaymentRequest:
    """Everything a gateway needs to build the customer's payment URL for one link."""

    txn_ref: str
    amount: int  # whole VND
    order_info: str  # what is paid for, in words
    locale: Locale
    created_at: datetime  # UTC-aware
    expires_at: datetime  # UTC-aware; the gateway refuses payment afterwards
    client_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class GatewayCallback:
    """A verified callback: the gateway's word on what happened to one of our orders."""

    gateway: str
    txn_ref: str
    amount: int | None  # whole VND; None when the gateway sent something that is not an amount
    response_code: str
    transaction_status: str
    gateway_txn_no: str
    bank_code: str | None
    pay_date: datetime | None  # UTC-aware
    raw: dict[str, str] = field(default_factory=dict)  # the signed parameters, for the records

    @property
    def succeeded(self) -> bool:
        """Money moved: both the response code and the transaction status say success."""
        return self.response_code == RESPONSE_SUCCESS and self.transaction_status == RESPONSE_SUCCESS

    @property
    def cancelled(self) -> bool:
        """The customer gave up on the gateway's page."""
        return self.response_code == RESPONSE_CANCELLED


class PaymentGateway(ABC):
    """A payment provider as the payment services see it."""

    #: Stored with links and payments; a callback only settles links issued for its gateway.
    name: str

    @abstractmethod
    def payment_url(self, request: PaymentRequest) -> str:
        """The URL where the customer pays `request`."""

    @abstractmethod
    def parse_callback(self, params: Mapping[str, str]) -> GatewayCallback:
        """Verify and read a callback's query parameters.

        Raises InvalidSignature when the parameters are not signed by this gateway, and
        MalformedCallback when they are but lack what the contract promises.
        """
