"""Which language a customer writes in: Vietnamese (with or without diacritics) or English.

Returns None when a message carries no evidence (a bare code, a phone number, an emoji), so the
conversation keeps the language it had.
"""

from __future__ import annotations

import re

from nlu.normalize import clean, strip_diacritics

_VI_LETTERS = re.compile(r"[ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ]", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
# Frequent words typed without diacritics; none of them is a common English word.
_VI_WORDS = set(
    "toi minh em anh chi ban ko khong k dc duoc hd hoa don tien dien thang truoc nay bao nhieu sao gi j "
    "oi a nhe nha nhi voi cho xem tra cuu giup mat cup cat lich thanh toan chao xin cam on ma khach hang "
    "sdt so dt dang ky lap dat cong to yeu cau sang ten hop dong nhan vien gap tong dai roi chua co muon "
    "can lam the nao khi nao o dau bi vay luon di hom qua mai ngay gio phuong quan huyen tinh thanh pho "
    "vang da uh u thoi huy dung sai biet tai sao bot may nguoi".split()
)
_EN_WORDS = set(
    "i my me you your the a an is are was be to of for and or in on at it this that what how when where "
    "why can could would please pay bill check show power outage electricity hello hi hey thanks thank "
    "want need help with no yes not do does did have has get see last month account code phone number "
    "request status price tariff agent human talk speak bye goodbye ok okay sure".split()
)


def detect_language(text: str) -> str | None:
    """'vi', 'en', or None when undecided."""
    cleaned = clean(text)
    if _VI_LETTERS.search(cleaned):
        return "vi"
    words = _WORD.findall(strip_diacritics(cleaned).lower())
    vi = sum(w in _VI_WORDS for w in words)
    en = sum(w in _EN_WORDS for w in words)
    if vi == en:
        return None
    return "vi" if vi > en else "en"
