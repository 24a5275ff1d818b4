"""HTTP routes of the payment flow: VNPay's IPN, the return page and the sandbox's pages.

- `GET /payments/vnpay/ipn`: the gateway's server-to-server notice; always HTTP 200 with
  VNPay's JSON answer `{"RspCode": ..., "Message": ...}`, whatever the input, except from an
  address outside VNPAY_IPN_ALLOWED_IPS when that is set (403, nothing read or settled).
- `GET /payments/return`: where the gateway sends the customer's browser; an HTML page that
  reports the result (it changes nothing: only the IPN settles a link).
- `GET/POST /payments/sandbox/{txn_ref}`: the built-in sandbox's pay page and its buttons;
  404 unless PAYMENT_GATEWAY is 'sandbox'.

Bad input gets the proper RspCode or a 4xx page, never a 500 or a stack trace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from backend.clock import utcnow
from backend.payments import IPN_PATH, RETURN_PATH, SandboxGateway, get_gateway
from backend.payments.sandbox import PAGE_PATH
from backend.services import payments
from backend.settings import Settings, get_settings
from bot import payments_pages as pages
from bot.ratelimit import RATE_LIMITS, IPNetwork, parse_networks

log = logging.getLogger(__name__)

MAX_PARAMS = 40
MAX_VALUE_CHARS = 2000
IPN_TIMEOUT_SECONDS = 10.0
_TXN_REF_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
IPN_SOURCES = web.AppKey("ipn_sources", tuple[IPNetwork, ...])


def _single_valued(params: Any) -> dict[str, str] | None:
    """A multidict of parameters as a plain dict; None if a name repeats, a value is not text or
    the whole is implausibly large (no signature can then be checked unambiguously)."""
    keys = list(params.keys())
    if len(keys) > MAX_PARAMS or len(set(keys)) != len(keys):
        return None
    result: dict[str, str] = {}
    for key in keys:
        value = params.get(key)
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            return None
        result[key] = value
    return result


def _security_headers() -> dict[str, str]:
    """No framing (clickjacking a Pay button), no scripts, forms only to us, nothing cached."""
    public = urlsplit(get_settings().public_base_url)
    origin = f"{public.scheme}://{public.netloc}"
    return {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
            f"frame-ancestors 'none'; form-action 'self' {origin}"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=_security_headers()
    )


def _not_found() -> web.Response:
    return _html(
        pages.error_page(
            "Không tìm thấy", "Not found",
            "Trang thanh toán này không tồn tại.", "This payment page does not exist.",
        ),
        404,
    )


def _bad_request() -> web.Response:
    return _html(
        pages.error_page(
            "Yêu cầu không hợp lệ", "Bad request",
            "Thông tin gửi lên không hợp lệ.", "The request is not valid.",
        ),
        400,
    )


# -- IPN and return ------------------------------------------------------------------------------


async def ipn(request: web.Request) -> web.Response:
    """VNPay's IPN: settle the link and answer in VNPay's JSON, always with HTTP 200."""
    sources = request.app.get(IPN_SOURCES)
    if sources:
        # The caller as our own proxies saw it (X-Forwarded-For believed from TRUSTED_PROXIES only).
        address = request.app[RATE_LIMITS].client_address(request)
        if address is None or not any(address in network for network in sources):
            log.warning("IPN refused from %s: not in VNPAY_IPN_ALLOWED_IPS", address)
            return web.json_response({"RspCode": "99", "Message": "Source not allowed"}, status=403)
    params = _single_valued(request.query)
    if params is None:
        answer = payments.INVALID_SIGNATURE
    else:
        answer = await payments.handle_ipn(params)
    return web.json_response(answer.as_json())


async def return_page(request: web.Request) -> web.Response:
    params = _single_valued(request.query)
    if params is None:
        return _bad_request()
    result = await payments.return_result(params)
    return _html(pages.return_page(result), 400 if result.outcome == "invalid" else 200)


# -- sandbox -------------------------------------------------------------------------------------


def _sandbox() -> SandboxGateway | None:
    gateway = get_gateway()
    return gateway if isinstance(gateway, SandboxGateway) else None


def _own_base_url(request: web.Request) -> str:
    """This server's own address, from the socket that accepted the request.

    Not from the Host header, which the client chooses: the sandbox must not be talked into
    sending its signed callbacks to some other server.
    """
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), int(sockname[1])
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if transport and transport.get_extra_info("sslcontext") else "http"
        return f"{scheme}://{host}:{port}"
    return get_settings().public_base_url


async def _call_ipn(request: web.Request, params: Mapping[str, str]) -> str | None:
    """Deliver the callback to our IPN endpoint over HTTP, as VNPay's server does; its RspCode."""
    url = f"{_own_base_url(request)}{IPN_PATH}"
    timeout = aiohttp.ClientTimeout(total=IPN_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, params=params) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("sandbox could not deliver the IPN for %s: %s", params.get("vnp_TxnRef"), type(exc).__name__)
        return None
    code = body.get("RspCode") if isinstance(body, dict) else None
    log.info("sandbox IPN for %s answered %s", params.get("vnp_TxnRef"), code)
    return str(code) if code is not None else None


async def sandbox_page(request: web.Request) -> web.Response:
    """The pay page of one link: details and the Pay / Cancel buttons while it is open."""
    gateway = _sandbox()
    txn_ref = request.match_info["txn_ref"]
    if gateway is None or not _TXN_REF_RE.match(txn_ref):
        return _not_found()
    link = await payments.payment_link(txn_ref)
    if link is None:
        return _not_found()
    now = utcnow()
    if not link.is_open(now):
        state = "expired" if link.status == "pending" else link.status
        return _html(pages.sandbox_closed_page(link, state), 410 if state == "expired" else 200)
    pay = gateway.outcome_params(link.txn_ref, link.amount, link.order_info, "pay", now)
    cancel = gateway.outcome_params(link.txn_ref, link.amount, link.order_info, "cancel", now)
    return _html(pages.sandbox_pay_page(link, f"{PAGE_PATH}{link.txn_ref}", pay, cancel))


async def sandbox_submit(request: web.Request) -> web.StreamResponse:
    """A button of the pay page: tell our IPN what happened, then send the browser back."""
    gateway = _sandbox()
    txn_ref = request.match_info["txn_ref"]
    if gateway is None or not _TXN_REF_RE.match(txn_ref):
        return _not_found()
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return _html(
            pages.error_page(
                "Không được phép", "Forbidden",
                "Yêu cầu đến từ một trang khác.", "The request came from another site.",
            ),
            403,
        )
    try:
        form = await request.post()
    except ValueError:
        return _bad_request()
    posted = _single_valued(form)
    if posted is None:
        return _bad_request()
    params = {name: value for name, value in posted.items() if name.startswith("vnp_")}
    if params.get("vnp_TxnRef") != txn_ref or not gateway.has_valid_signature(params):
        return _bad_request()
    link = await payments.payment_link(txn_ref)
    if link is None:
        return _not_found()
    if link.status == "pending" and not link.is_open():
        # Like VNPay after vnp_ExpireDate: the gateway takes no payment for an expired order.
        return _html(pages.sandbox_closed_page(link, "expired"), 410)
    await _call_ipn(request, params)
    raise web.HTTPSeeOther(f"{gateway.return_url}?{urlencode(params)}")


def register_payment_routes(app: web.Application, settings: Settings | None = None) -> None:
    """Add the payment routes to `app`. Builds the configured gateway and reads the IPN's
    allowed sources now, so that a bad payment configuration stops startup instead of failing
    the first customer."""
    get_gateway()
    settings = settings or get_settings()
    app[IPN_SOURCES] = parse_networks(settings.vnpay_ipn_allowed_ips, "VNPAY_IPN_ALLOWED_IPS")
    app.router.add_get(IPN_PATH, ipn)
    app.router.add_get(RETURN_PATH, return_page)
    app.router.add_get(PAGE_PATH + "{txn_ref}", sandbox_page)
    app.router.add_post(PAGE_PATH + "{txn_ref}", sandbox_submit)
