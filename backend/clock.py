"""Time as the business sees it: timestamps are stored in UTC, calendar dates are Vietnamese.

Due dates, "overdue" and "the current month" are decided on the wall calendar in Viet Nam, while
every stored timestamp is UTC. Keeping both conversions here stops each service from growing its
own idea of "today".
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    VN_TZ: timezone | ZoneInfo = ZoneInfo("Asia/Ho_Chi_Minh")
except ZoneInfoNotFoundError:
    # Slim container images may ship without tzdata. Viet Nam has kept UTC+7 without DST since
    # 1975, so a fixed offset gives the same answers for any date this service deals with.
    VN_TZ = timezone(timedelta(hours=7), "ICT")


def utcnow() -> datetime:
    """The current instant as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def ensure_aware(moment: datetime | None) -> datetime:
    """`moment` converted to UTC, or now when None; naive datetimes are refused as ambiguous."""
    if moment is None:
        return utcnow()
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    return moment.astimezone(UTC)


def today_vn(now: datetime | None = None) -> date:
    """The calendar date in Viet Nam at `now` (default: the current instant)."""
    return ensure_aware(now).astimezone(VN_TZ).date()


def vn_datetime(day: date, hour: int = 0, minute: int = 0) -> datetime:
    """A wall-clock time in Viet Nam on `day`, returned in UTC for storage."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=VN_TZ).astimezone(UTC)
