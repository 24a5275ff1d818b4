"""Payment gateways: the interface (gateway.py), VNPay (vnpay.py) and the built-in sandbox.

`get_gateway()` is the one gateway of this process, chosen by PAYMENT_GATEWAY. It is built
once, so the sandbox's random secret (when SANDBOX_PAYMENT_SECRET is unset) stays the same
for the pages it draws and the callbacks it verifies.
"""

from __future__ import annotations

from functools import lru_cache

from backend.payments.gateway import (
    CallbackError,
    GatewayCallback,
    InvalidSignature,
    MalformedCallback,
    PaymentGateway,
    PaymentRequest,
)
from backend.payments.sandbox import SandboxGateway
from backend.payments.vnpay import VnpayGateway
from backend.settings import Settings, get_settings

RETURN_PATH = "/payments/return"
IPN_PATH = "/payments/vnpay/ipn"


def build_gateway(settings: Settings) -> PaymentGateway:
    """The gateway these settings choose (settings validation already required VNPay's keys)."""
    return_url = f"{settings.public_base_url}{RETURN_PATH}"
    if settings.payment_gateway == "vnpay":
        if not settings.vnpay_tmn_code or settings.vnpay_hash_secret is None:
            raise ValueError("PAYMENT_GATEWAY=vnpay needs VNPAY_TMN_CODE and VNPAY_HASH_SECRET")
        return VnpayGateway(
            settings.vnpay_tmn_code,
            settings.vnpay_hash_secret.get_secret_value(),
            settings.vnpay_payment_url,
            return_url,
        )
    secret = settings.sandbox_payment_secret
    return SandboxGateway(
        settings.public_base_url, return_url, secret.get_secret_value() if secret else None
    )


@lru_cache(maxsize=1)
def get_gateway() -> PaymentGateway:
    """The process's gateway; tests call `get_gateway.cache_clear()` after changing the env."""
    return build_gateway(get_settings())


__all__ = [
    "IPN_PATH",
    "RETURN_PATH",
    "CallbackError",
    "GatewayCallback",
    "InvalidSignature",
    "MalformedCallback",
    "PaymentGateway",
    "PaymentRequest",
    "SandboxGateway",
    "VnpayGateway",
    "build_gateway",
    "get_gateway",
]
