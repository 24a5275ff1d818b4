"""Fixtures shared by the backend tests, on top of `backend_db` from tests/conftest.py."""

from __future__ import annotations

from datetime import date

import pytest

from backend.seed import seed_demo

# A fixed "today" makes periods and overdue flags predictable: the seed then bills
# 2026-05 .. 2026-10, and 2026-11-26 is past the 20th, when the 2026-10 bills fall due.
SEED_TODAY = date(2026, 11, 26)


@pytest.fixture
async def seeded(backend_db: str) -> date:
    """The demo data seeded as of SEED_TODAY; returns that date."""
    await seed_demo(SEED_TODAY)
    return SEED_TODAY
