"""The HTML pages of the payment flow: the sandbox's pay page and the return page.

Plain server-rendered HTML, Vietnamese with English, no scripts. Every value that comes from
the database or a request goes through `html.escape`, and nothing secret is ever put in a page
(the sandbox's hidden fields hold a signature, never the key).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape

from backend.clock import VN_TZ
from backend.services.payments import (
    PaymentLinkInfo,
    ReturnResult,
    format_periods,
    format_vnd,
)

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:34rem;
margin:2rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.35rem}.en{color:#555}table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{text-align:left;padding:.35rem .25rem;border-bottom:1px solid #ddd;vertical-align:top}
.amount{font-size:1.2rem;font-weight:600}.note{background:#fff7d6;padding:.5rem .75rem;border-radius:4px}
form{display:inline-block;margin:.5rem .5rem 0 0}button{font-size:1rem;padding:.6rem 1.2rem;
border-radius:4px;border:1px solid #0b5ed7;cursor:pointer}.pay{background:#0b5ed7;color:#fff}
.cancel{background:#fff;color:#0b5ed7}.ok{color:#146c2e}.bad{color:#b02a37}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _both(vi: str, en: str) -> str:
    """Vietnamese first, English after it, both escaped."""
    return f'{escape(vi)} <span class="en">· {escape(en)}</span>'


def _row(vi: str, en: str, value: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<tr><th>{_both(vi, en)}</th><td{cls}>{escape(value)}</td></tr>"


def _vn_time(moment: datetime) -> str:
    return moment.astimezone(VN_TZ).strftime("%H:%M %d/%m/%Y")


def _link_rows(link: PaymentLinkInfo) -> str:
    rows = []
    if link.customer_code:
        rows.append(_row("Mã khách hàng", "Customer code", link.customer_code))
    if link.periods:
        rows.append(_row("Hóa đơn kỳ", "Bills for", format_periods(link.periods)))
    else:
        rows.append(_row("Nội dung", "For", link.description))
    rows.append(_row("Số tiền", "Amount", format_vnd(link.amount, "vi"), "amount"))
    rows.append(_row("Mã giao dịch", "Order reference", link.txn_ref))
    return "".join(rows)


def _hidden_fields(params: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in sorted(params.items())
    )


def sandbox_pay_page(
    link: PaymentLinkInfo, action: str, pay: Mapping[str, str], cancel: Mapping[str, str]
) -> str:
    """The sandbox's page for an open link: what is paid, and Pay / Cancel buttons.

    Each button's form carries the signed callback for its outcome; the handler accepts only
    parameters with a valid sandbox signature for this very link, so another site cannot make
    a browser post a payment it could not read from this page first.
    """
    body = (
        f"<h1>{_both('Cổng thanh toán thử nghiệm', 'Payment sandbox')}</h1>"
        f'<p class="note">{_both("Đây là môi trường thử nghiệm: không có tiền thật được chuyển.", "This is a sandbox: no real money moves.")}</p>'
        f"<table>{_link_rows(link)}"
        f"{_row('Hết hạn lúc', 'Expires at', _vn_time(link.expires_at) + ' (GMT+7)')}</table>"
        f'<form method="post" action="{escape(action)}" autocomplete="off">{_hidden_fields(pay)}'
        f'<button class="pay" type="submit">{_both("Thanh toán", "Pay")}</button></form>'
        f'<form method="post" action="{escape(action)}" autocomplete="off">{_hidden_fields(cancel)}'
        f'<button class="cancel" type="submit">{_both("Hủy", "Cancel")}</button></form>'
    )
    return _page("Thanh toán tiền điện · Payment", body)


_CLOSED = {
    "paid": ("Liên kết này đã được thanh toán.", "This link has already been paid."),
    "expired": (
        "Liên kết thanh toán đã hết hạn. Bạn hãy yêu cầu liên kết mới trong cuộc trò chuyện.",
        "This payment link has expired. Please ask for a new one in the chat.",
    ),
    "cancelled": (
        "Giao dịch đã bị hủy. Bạn hãy yêu cầu liên kết mới trong cuộc trò chuyện.",
        "The payment was cancelled. Please ask for a new link in the chat.",
    ),
    "failed": (
        "Giao dịch không thành công. Bạn hãy yêu cầu liên kết mới trong cuộc trò chuyện.",
        "The payment failed. Please ask for a new link in the chat.",
    ),
}


def sandbox_closed_page(link: PaymentLinkInfo, state: str) -> str:
    """The sandbox's page for a link that can no longer be paid (`state`: paid/expired/...)."""
    vi, en = _CLOSED.get(state, _CLOSED["failed"])
    body = (
        f"<h1>{_both('Cổng thanh toán thử nghiệm', 'Payment sandbox')}</h1>"
        f"<p>{_both(vi, en)}</p><table>{_link_rows(link)}</table>"
    )
    return _page("Thanh toán tiền điện · Payment", body)


_OUTCOMES = {
    "paid": (
        "ok",
        ("Thanh toán thành công", "Payment successful"),
        (
            "Chúng tôi đã nhận được thanh toán. Xác nhận cũng được gửi vào cuộc trò chuyện của bạn.",
            "We have received your payment. A confirmation is also sent to your chat.",
        ),
    ),
    "processing": (
        "ok",
        ("Đang xác nhận thanh toán", "Confirming your payment"),
        (
            "Cổng thanh toán báo giao dịch thành công. Chúng tôi sẽ xác nhận trong cuộc trò chuyện ngay khi nhận được thông báo của ngân hàng.",
            "The payment gateway reports success. We will confirm in the chat as soon as the bank's notice reaches us.",
        ),
    ),
    "not_paid": (
        "bad",
        ("Chưa thanh toán", "Not paid"),
        (
            "Giao dịch đã bị hủy, hết hạn hoặc không thành công; không có khoản nào được ghi nhận. Bạn có thể yêu cầu liên kết mới trong cuộc trò chuyện.",
            "The payment was cancelled, expired or failed; nothing was charged to your bills. You can ask for a new link in the chat.",
        ),
    ),
}


def return_page(result: ReturnResult) -> str:
    """The page the customer's browser lands on after the gateway."""
    if result.outcome == "invalid":
        return error_page(
            "Liên kết không hợp lệ", "Invalid link",
            "Thông tin giao dịch không hợp lệ hoặc không thuộc hệ thống của chúng tôi.",
            "These payment details are not valid or do not belong to us.",
        )
    css, (title_vi, title_en), (text_vi, text_en) = _OUTCOMES[result.outcome]
    rows = []
    if result.customer_code:
        rows.append(_row("Mã khách hàng", "Customer code", result.customer_code))
    if result.periods:
        rows.append(_row("Hóa đơn kỳ", "Bills for", format_periods(result.periods)))
    elif result.description:
        rows.append(_row("Nội dung", "For", result.description))
    if result.amount is not None:
        rows.append(_row("Số tiền", "Amount", format_vnd(result.amount, "vi"), "amount"))
    if result.txn_ref:
        rows.append(_row("Mã giao dịch", "Order reference", result.txn_ref))
    body = (
        f'<h1 class="{css}">{_both(title_vi, title_en)}</h1>'
        f"<p>{_both(text_vi, text_en)}</p><table>{''.join(rows)}</table>"
    )
    return _page(f"{title_vi} · {title_en}", body)


def error_page(title_vi: str, title_en: str, text_vi: str, text_en: str) -> str:
    """A short bilingual page for a 4xx answer."""
    body = f'<h1 class="bad">{_both(title_vi, title_en)}</h1><p>{_both(text_vi, text_en)}</p>'
    return _page(f"{title_vi} · {title_en}", body)
