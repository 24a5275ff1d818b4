"""Normalisation of what customers type to identify themselves: customer codes and phone numbers.

Customers write the same phone number as "0912 345 678", "0912.345.678" or "+84 912 345 678",
and the same customer code in any letter case; the database stores one canonical form of each.
"""

from __future__ import annotations

import re

# Separators people put inside phone numbers; anything else stays, so garbage never matches.
_PHONE_SEPARATORS = re.compile(r"[\s.\-()]")


def normalize_customer_code(code: str) -> str:
    """Customer codes are stored upper-case without surrounding blanks (e.g. 'PE0400012345')."""
    return code.strip().upper()


def normalize_phone(phone: str) -> str:
    """A Vietnamese phone number in national form '0xxxxxxxxx'.

    Spaces, dots, dashes and parentheses are dropped and the international prefixes +84, 0084
    and 84 become the trunk prefix 0. Input that is not a phone number comes back merely
    stripped of separators, so it can still be compared but will not match a stored number.
    """
    digits = _PHONE_SEPARATORS.sub("", phone)
    if digits.startswith("+84"):
        return "0" + digits[3:]
    if digits.startswith("0084"):
        return "0" + digits[4:]
    # A bare "84" is a country code only when followed by a full 9-digit subscriber number;
    # national numbers always start with 0, so there is no clash.
    if digits.startswith("84") and len(digits) == 11 and digits.isdigit():
        return "0" + digits[2:]
    return digits
