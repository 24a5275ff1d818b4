"""Support-staff accounts of the agent console: creation, login with lockout, sessions, presence.

Passwords are argon2 hashes. A session is a random token in an HttpOnly cookie; only its SHA-256
is stored, next to the session's CSRF token. Sessions live in the database, so any worker
process recognises them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update

from backend.clock import utcnow
from backend.db import read_scope, session_scope
from backend.models import AuditEntry, StaffSession, StaffUser

Role = Literal["agent", "admin"]
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
ONLINE_WINDOW = timedelta(minutes=2)

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that a login takes as long either way.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class StaffError(ValueError):
    """A staff account cannot be created as asked (name taken, weak password, bad role)."""


@dataclass(frozen=True)
class StaffInfo:
    id: int
    username: str
    display_name: str
    role: Role
    max_chats: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class LoginResult:
    """`token` and `csrf_token` are set when the login succeeded; `locked_until` when locked."""

    staff: StaffInfo | None
    token: str | None = None
    csrf_token: str | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class SessionInfo:
    staff: StaffInfo
    csrf_token: str


def _info(row: StaffUser) -> StaffInfo:
    return StaffInfo(row.id, row.username, row.display_name, row.role, row.max_chats)  # type: ignore[arg-type]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_staff(
    username: str, password: str, role: Role = "agent", *, display_name: str | None = None, max_chats: int = 3
) -> StaffInfo:
    """A new console account; raises StaffError for a taken name, a bad role or a short password."""
    username = username.strip().lower()
    if not username or len(username) > 60 or not username.replace(".", "").replace("_", "").replace("-", "").isalnum():
        raise StaffError("the username must be 1-60 letters, digits, '.', '_' or '-'")
    if role not in ("agent", "admin"):
        raise StaffError("the role must be 'agent' or 'admin'")
    if len(password) < 10:
        raise StaffError("the password must have at least 10 characters")
    if max_chats < 1:
        raise StaffError("max_chats must be at least 1")
    async with session_scope() as session:
        if await session.scalar(select(StaffUser.id).where(StaffUser.username == username)):
            raise StaffError(f"the username {username!r} is taken")
        row = StaffUser(
            username=username,
            display_name=display_name or username,
            password_hash=_hasher.hash(password),
            role=role,
            max_chats=max_chats,
            active=True,
            failed_logins=0,
        )
        session.add(row)
        await session.flush()
        return _info(row)


async def login(username: str, password: str, *, now: datetime | None = None) -> LoginResult:
    """Check a password. Five wrong passwords in a row lock the account for 15 minutes (a
    correct password does not get in while locked). Success opens a session."""
    now = now or utcnow()
    async with session_scope() as session:
        row = await session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
        if row is None or not row.active:
            _verify(_DUMMY_HASH, password)
            return LoginResult(None)
        if row.locked_until and row.locked_until > now:
            return LoginResult(None, locked_until=row.locked_until)
        if not _verify(row.password_hash, password):
            row.failed_logins += 1
            if row.failed_logins >= MAX_FAILED_LOGINS:
                row.failed_logins = 0
                row.locked_until = now + LOCKOUT
            session.add(AuditEntry(staff_id=row.id, action="login_failed", detail={}, created_at=now))
            return LoginResult(None, locked_until=row.locked_until if row.locked_until and row.locked_until > now else None)
        row.failed_logins = 0
        row.locked_until = None
        row.last_seen_at = now
        if _hasher.check_needs_rehash(row.password_hash):
            row.password_hash = _hasher.hash(password)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session.add(StaffSession(token_hash=_token_hash(token), staff_id=row.id, csrf_token=csrf, created_at=now, expires_at=now + SESSION_LIFETIME))
        session.add(AuditEntry(staff_id=row.id, action="login", detail={}, created_at=now))
        return LoginResult(_info(row), token, csrf)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def session_for(token: str, *, now: datetime | None = None) -> SessionInfo | None:
    """The staff member behind a session cookie, if the session exists, has not expired and the
    account is still active."""
    if not token:
        return None
    now = now or utcnow()
    async with read_scope() as session:
        found = (
            await session.execute(
                select(StaffSession, StaffUser)
                .join(StaffUser, StaffUser.id == StaffSession.staff_id)
                .where(StaffSession.token_hash == _token_hash(token), StaffSession.expires_at > now, StaffUser.active.is_(True))
            )
        ).first()
    return SessionInfo(_info(found[1]), found[0].csrf_token) if found else None


async def logout(token: str) -> None:
    async with session_scope() as session:
        await session.execute(delete(StaffSession).where(StaffSession.token_hash == _token_hash(token)))


async def touch(staff_id: int, *, now: datetime | None = None) -> None:
    """Mark an agent as present (the console calls this while it is open)."""
    async with session_scope() as session:
        await session.execute(update(StaffUser).where(StaffUser.id == staff_id).values(last_seen_at=now or utcnow()))


async def agents_online(*, now: datetime | None = None) -> int:
    """How many staff members have had the console open in the last two minutes."""
    now = now or utcnow()
    async with read_scope() as session:
        rows = await session.scalars(
            select(StaffUser.id).where(StaffUser.active.is_(True), StaffUser.last_seen_at > now - ONLINE_WINDOW)
        )
        return len(list(rows))


async def list_staff() -> list[StaffInfo]:
    async with read_scope() as session:
        rows = await session.scalars(select(StaffUser).where(StaffUser.active.is_(True)).order_by(StaffUser.username))
        return [_info(r) for r in rows]
