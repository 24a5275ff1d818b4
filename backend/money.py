"""Money as customers read it: whole VND, grouped the Vietnamese or the English way."""

from __future__ import annotations


def format_vnd(amount: int, language: str) -> str:
    """1234567 -> '1.234.567 đ' (vi) or '1,234,567 VND' (en)."""
    grouped = f"{amount:,}"
    return f"{grouped.replace(',', '.')} đ" if language == "vi" else f"{grouped} VND"
