"""Database schema of the backend store, as SQLAlchemy 2 typed ORM models.

Only the services in `backend.services` (and the seed) use these classes; everything outside the
backend receives frozen dataclasses instead. The schema itself only changes through the Alembic
migrations in `backend/migrations`, which a test keeps in step with these models.

Conventions: money is whole VND in BIGINT columns, timestamps are timezone-aware and stored in
UTC, enumerations are short strings guarded by CHECK constraints (no PostgreSQL ENUM types, so
SQLite and PostgreSQL share one migration).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from backend.clock import utcnow

# Explicit constraint names keep migrations portable: PostgreSQL and SQLite would otherwise
# invent different names, and a later migration could not drop a constraint by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TARIFF_CODES = ("residential", "business")
BILL_STATUSES = ("unpaid", "paid")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back aware and in UTC.

    PostgreSQL stores `timestamptz` natively, but SQLite keeps only the wall-clock text and
    drops the offset. Converting to UTC on the way in and re-attaching UTC on the way out makes
    both databases behave alike, and refusing naive values catches local-time bugs early.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; use UTC-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class Customer(Base):
    """An electricity customer, identified to the public by `code` (e.g. PE0400012345)."""

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("code = upper(code)", name="code_upper"),
        CheckConstraint(_in_list("tariff_code", TARIFF_CODES), name="tariff_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # National form 0xxxxxxxxx (see backend.identifiers.normalize_phone).
    phone: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(255))
    ward: Mapped[str] = mapped_column(String(100))
    district: Mapped[str] = mapped_column(String(100))
    province: Mapped[str] = mapped_column(String(100))
    tariff_code: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contract(Base):
    """The supply contract of a customer and the meter it is billed on."""

    __tablename__ = "contracts"
    __table_args__ = (CheckConstraint(_in_list("tariff_code", TARIFF_CODES), name="tariff_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    contract_number: Mapped[str] = mapped_column(String(32), unique=True)
    meter_serial: Mapped[str] = mapped_column(String(32), unique=True)
    tariff_code: Mapped[str] = mapped_column(String(20))
    start_date: Mapped[date] = mapped_column(Date)


class Tariff(Base):
    """Block (tiered) prices of one tariff from `effective_from` until the next row of that code.

    `tiers` is a list of {"up_to": int | None, "price": int}: VND per kWh before VAT, blocks in
    ascending order, the last one with up_to None meaning "no upper bound".
    """

    __tablename__ = "tariffs"
    __table_args__ = (
        UniqueConstraint("code", "effective_from"),
        CheckConstraint(_in_list("code", TARIFF_CODES), name="code"),
        CheckConstraint("vat_percent >= 0 AND vat_percent <= 100", name="vat_percent"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    effective_from: Mapped[date] = mapped_column(Date)
    vat_percent: Mapped[int] = mapped_column(Integer)
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class Bill(Base):
    """The electricity bill of one customer for one month ('YYYY-MM'); amounts in VND."""

    __tablename__ = "bills"
    __table_args__ = (
        UniqueConstraint("customer_id", "period"),
        CheckConstraint(_in_list("status", BILL_STATUSES), name="status"),
        CheckConstraint("kwh >= 0", name="kwh_not_negative"),
        CheckConstraint("amount = amount_before_vat + vat_amount", name="amount_total"),
        # A paid bill must say when it was paid, and an unpaid one must not.
        CheckConstraint(
            "(status = 'paid' AND paid_at IS NOT NULL) OR (status = 'unpaid' AND paid_at IS NULL)",
            name="paid_at_matches_status",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    period: Mapped[str] = mapped_column(String(7))
    kwh: Mapped[int] = mapped_column(Integer)
    amount_before_vat: Mapped[int] = mapped_column(BigInteger)
    vat_amount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="unpaid")
    paid_at: Mapped[datetime | None] = mapped_column()
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelLink(Base):
    """A chat (channel + sender) that proved it may see a customer's data."""

    __tablename__ = "channel_links"
    __table_args__ = (UniqueConstraint("channel", "sender_id", "customer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    sender_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)


class VerificationAttempt(Base):
    """One ownership check (code + phone) from a chat; the failures drive the lockout."""

    __tablename__ = "verification_attempts"
    # Named by hand: the convention's name would exceed PostgreSQL's 63-character limit and be
    # truncated there but not on SQLite.
    __table_args__ = (
        Index(
            "ix_verification_attempts_lookup", "channel", "sender_id", "customer_code", "created_at"
        ),
        # The per-code throttle counts a code's failures from every chat (migration 0009).
        Index("ix_verification_attempts_code", "customer_code", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    sender_id: Mapped[str] = mapped_column(String(128))
    # Not a foreign key: attempts are kept even if the customer row is later removed.
    customer_code: Mapped[str] = mapped_column(String(20))
    success: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackerEvent(Base):
    """One Rasa event of a conversation, for the SQL tracker store.

    (sender_id, seq) is unique: two workers appending after the same position cannot both
    succeed, so a stale writer is refused instead of interleaving events.
    """

    __tablename__ = "tracker_events"
    __table_args__ = (UniqueConstraint("sender_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sender_id: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(Integer)
    type_name: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[float] = mapped_column(Float)
    data: Mapped[str] = mapped_column(Text)


OUTBOX_STATUSES = ("pending", "sent", "failed")
_PENDING = text("status = 'pending'")


class InboundUpdate(Base):
    """A platform update (Telegram, Zalo) acknowledged to the platform but not yet handled.

    The webhook answers 200 before the turn runs (platforms want a quick answer), so the update
    is written here first and deleted once handled: a worker that dies in between leaves its
    row, and another worker (or the restart) handles it. Rows live seconds, not days."""

    __tablename__ = "inbound_updates"
    __table_args__ = (UniqueConstraint("channel", "update_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    update_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)  # the verified request body
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)


class OutboxMessage(Base):
    """A message for a customer, written before it is sent so that nothing is lost.

    Payment confirmations, ticket updates and power-restored notices are added in the same
    transaction as the change they announce; a channel worker (or the REST poll) delivers them.
    `dedupe_key` makes an announcement happen once even if its cause is processed twice.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in_list("status", OUTBOX_STATUSES), name="status"),
        Index("ix_outbox_recipient", "channel", "recipient_id", "status"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # Only the pending rows (migration 0009): a chat's oldest pending row in one probe, and
        # the pending rows in id order for `claim_due`, however many sent rows pile up.
        Index("ix_outbox_pending_chat", "channel", "recipient_id", "id", postgresql_where=_PENDING, sqlite_where=_PENDING),
        Index("ix_outbox_pending", "id", postgresql_where=_PENDING, sqlite_where=_PENDING),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    recipient_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(40))
    # {"response": "utter_...", "values": {...}} rendered by the bot in `language`, or {"text": ...}
    payload: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(5), default="vi")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    # A channel worker's claim (migration 0006): while `lease_until` is in the future only the
    # worker `claimed_by` may send the message; a worker that dies leaves a lease that expires.
    lease_until: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(64))


PAYMENT_PURPOSES = ("bills", "fee")
PAYMENT_LINK_STATUSES = ("pending", "paid", "expired", "cancelled", "failed")


class PaymentLink(Base):
    """A request for money sent to a chat: one bill, all unpaid bills, or a service fee.

    `txn_ref` is our order reference at the payment gateway (VNPay's vnp_TxnRef); the customer
    pays the exact `amount` (whole VND) before `expires_at`. The chat that asked is kept so
    that the confirmation goes back to it, in its language. Bills covered by the link are in
    `payment_link_bills`; a fee link instead names what it pays for in `reference` (e.g. a
    service-request ticket id).
    """

    __tablename__ = "payment_links"
    __table_args__ = (
        CheckConstraint(_in_list("purpose", PAYMENT_PURPOSES), name="purpose"),
        CheckConstraint(_in_list("status", PAYMENT_LINK_STATUSES), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("purpose <> 'fee' OR reference IS NOT NULL", name="fee_has_reference"),
        CheckConstraint(
            "purpose <> 'bills' OR customer_id IS NOT NULL", name="bills_have_customer"
        ),
        CheckConstraint(
            "(status = 'paid' AND paid_at IS NOT NULL) OR (status <> 'paid' AND paid_at IS NULL)",
            name="paid_at_matches_status",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    txn_ref: Mapped[str] = mapped_column(String(32), unique=True)
    # The gateway the link was issued for ('sandbox', 'vnpay').
    gateway: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(10))
    reference: Mapped[str | None] = mapped_column(String(64), index=True)
    description: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    # The gateway's response code of the callback that closed the link unpaid (e.g. '24').
    response_code: Mapped[str | None] = mapped_column(String(2))
    channel: Mapped[str] = mapped_column(String(20))
    recipient_id: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(5), default="vi")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    paid_at: Mapped[datetime | None] = mapped_column()


class PaymentLinkBill(Base):
    """A bill that a payment link covers; paying the link pays all of its bills."""

    __tablename__ = "payment_link_bills"

    payment_link_id: Mapped[int] = mapped_column(
        ForeignKey("payment_links.id", ondelete="CASCADE"), primary_key=True
    )
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), primary_key=True, index=True)


class Payment(Base):
    """Money received through a gateway for one payment link, from its confirmed callback.

    Unique `txn_ref`: a link is paid at most once, however often the gateway repeats the
    callback. Unique (gateway, gateway_txn_no): one gateway transaction settles one link.
    `raw_callback` keeps the callback's parameters (no secrets in them) for reconciliation.
    """

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("gateway", "gateway_txn_no"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    txn_ref: Mapped[str] = mapped_column(ForeignKey("payment_links.txn_ref"), unique=True)
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_txn_no: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    bank_code: Mapped[str | None] = mapped_column(String(20))
    paid_at: Mapped[datetime] = mapped_column()
    raw_callback: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


SERVICE_TYPES = (
    "new_connection",
    "meter_inspection",
    "meter_relocation",
    "contract_change",
    "ownership_transfer",
    "reconnection",
    "usage_purpose_change",
)
REQUEST_STATUSES = ("received", "in_progress", "scheduled", "completed", "cancelled", "rejected")


class ServiceType(Base):
    """The online electricity services a customer can request, with their fee (data, not code)."""

    __tablename__ = "service_types"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name_vi: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    fee: Mapped[int] = mapped_column(BigInteger, default=0)  # VND, VAT included; 0 = free
    needs_existing_contract: Mapped[bool] = mapped_column(Boolean, default=True)


class TicketCounter(Base):
    """The last ticket number handed out per prefix and day (YC20261126 -> 3 gives YC20261126003)."""

    __tablename__ = "ticket_counters"

    prefix: Mapped[str] = mapped_column(String(20), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class ServiceRequest(Base):
    """A customer's request for an electricity service, tracked by its ticket id."""

    __tablename__ = "service_requests"
    __table_args__ = (
        CheckConstraint(_in_list("status", REQUEST_STATUSES), name="status"),
        CheckConstraint(_in_list("service_type", SERVICE_TYPES), name="service_type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(20), unique=True)
    service_type: Mapped[str] = mapped_column(ForeignKey("service_types.code"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    address: Mapped[str | None] = mapped_column(String(255))
    contact_phone: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    preferred_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="received")
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    # The chat that made the request hears about every change.
    channel: Mapped[str] = mapped_column(String(20))
    recipient_id: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(5), default="vi")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceRequestEvent(Base):
    """One step of a request's history: its status, a note for the customer, who did it."""

    __tablename__ = "service_request_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


INCIDENT_STATUSES = ("active", "restored")
OPEN_INCIDENT = text("status = 'active' AND lapsed_at IS NULL")


class OutageIncident(Base):
    """A power cut in an area: known to staff (with cause and expected restoration) or
    assembled from customers' reports in the same ward within a time window."""

    __tablename__ = "outage_incidents"
    __table_args__ = (
        CheckConstraint(_in_list("status", INCIDENT_STATUSES), name="status"),
        Index("ix_outage_incidents_area", "area_key", "status"),
        # At most one incident per ward collects reports (migration 0009): concurrent first
        # reports insert with ON CONFLICT DO NOTHING instead of locking each other out.
        Index("ux_outage_incidents_open", "area_key", unique=True, postgresql_where=OPEN_INCIDENT, sqlite_where=OPEN_INCIDENT),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(20), unique=True)
    ward: Mapped[str] = mapped_column(String(100))
    district: Mapped[str] = mapped_column(String(100))
    province: Mapped[str] = mapped_column(String(100))
    area_key: Mapped[str] = mapped_column(String(120))  # diacritics-free ward name
    cause: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(20))  # "staff" or "reports"
    status: Mapped[str] = mapped_column(String(20), default="active")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    expected_restore_at: Mapped[datetime | None] = mapped_column()
    restored_at: Mapped[datetime | None] = mapped_column()
    # Kept in place by each report (migration 0009), so a report is one UPDATE, not a count.
    report_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_report_at: Mapped[datetime | None] = mapped_column()
    # Set when a reports-only incident went quiet for the grouping window and a new report
    # opened another: it stays active (staff can still restore it and tell its reporters) but
    # takes no more reports.
    lapsed_at: Mapped[datetime | None] = mapped_column()


class OutageReport(Base):
    """A customer's report that the power is out, with the reference they were given."""

    __tablename__ = "outage_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(20), unique=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("outage_incidents.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    location_text: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(20))
    recipient_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutageSubscription(Base):
    """A chat to tell when the incident's power is back."""

    __tablename__ = "outage_subscriptions"
    __table_args__ = (UniqueConstraint("incident_id", "channel", "recipient_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("outage_incidents.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    recipient_id: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(5), default="vi")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlannedOutage(Base):
    """Scheduled maintenance: the power is off in an area between two times."""

    __tablename__ = "planned_outages"
    __table_args__ = (Index("ix_planned_outages_area", "area_key", "start_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ward: Mapped[str] = mapped_column(String(100))
    district: Mapped[str] = mapped_column(String(100))
    province: Mapped[str] = mapped_column(String(100))
    area_key: Mapped[str] = mapped_column(String(120))
    detail: Mapped[str] = mapped_column(String(255))  # streets or transformer stations affected
    reason: Mapped[str] = mapped_column(String(255))
    start_at: Mapped[datetime] = mapped_column()
    end_at: Mapped[datetime] = mapped_column()


STAFF_ROLES = ("agent", "admin")


class StaffUser(Base):
    """A support-staff account of the agent console; `password_hash` is an argon2 hash.

    `failed_logins` and `locked_until` drive the login lockout; `last_seen_at` is refreshed by
    the console while the agent has it open, and "an agent is online" means seen recently.
    """

    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint(_in_list("role", STAFF_ROLES), name="role"),
        CheckConstraint("max_chats > 0", name="max_chats_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10))
    max_chats: Mapped[int] = mapped_column(Integer, default=3)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffSession(Base):
    """A logged-in console session. Only the SHA-256 of the cookie's token is stored, so a
    leaked table does not log anyone in; `csrf_token` must accompany every state change."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


HANDOFF_STATUSES = ("waiting", "active", "callback", "resolved", "cancelled")


class Handoff(Base):
    """A conversation escalated to a person.

    'waiting' in the queue, 'active' once an agent claimed it (`assigned_to`), 'callback' when
    nobody could take it (outside business hours, no agent online) and staff call back later,
    'resolved' when handed back to the bot or closed (`resolution`), 'cancelled' when the
    customer went back to the bot before anyone claimed it. Claiming is a conditional UPDATE
    on status, so two agents can never both own one.
    """

    __tablename__ = "handoffs"
    __table_args__ = (
        CheckConstraint(_in_list("status", HANDOFF_STATUSES), name="status"),
        CheckConstraint("status <> 'active' OR assigned_to IS NOT NULL", name="active_has_agent"),
        Index("ix_handoffs_conversation", "conversation_id", "status"),
        Index("ix_handoffs_status", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(20), unique=True)
    conversation_id: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(20))
    recipient_id: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(5), default="vi")
    status: Mapped[str] = mapped_column(String(10), default="waiting")
    reason: Mapped[str] = mapped_column(String(40))
    # {"intents": [...], "customer_codes": [...], "last_bill": ..., "open_tickets": [...]}
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_message: Mapped[str | None] = mapped_column(Text)
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), index=True)
    resolution: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class HandoffNote(Base):
    """A private note on a handoff: staff see it, the customer never does."""

    __tablename__ = "handoff_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what in the console: logins, claims, transfers, hand-backs, closes."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    action: Mapped[str] = mapped_column(String(40))
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoffs.id", ondelete="SET NULL"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelToken(Base):
    """The current OAuth tokens of a messaging platform (Zalo OA), shared by every worker.

    Zalo refresh tokens are single use: whoever refreshes must store the new pair before anyone
    uses it, and two workers must never refresh with the same token. `version` grows with every
    refresh; a worker holding version N that finds N+1 here uses it instead of refreshing. The
    refresh itself is claimed with a short lease (`refresh_owner`, `refresh_lease_until`) so the
    HTTP call happens outside any database transaction. `seed_fingerprint` is the SHA-256 of the
    refresh token the environment supplied, so a re-authorised OA (new tokens in the
    environment) replaces the stored pair while an unchanged environment does not.
    """

    __tablename__ = "channel_tokens"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(Integer, default=1)
    refresh_owner: Mapped[str | None] = mapped_column(String(64))
    refresh_lease_until: Mapped[datetime | None] = mapped_column()
    seed_fingerprint: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


NLU_KINDS = ("intent", "synonym", "regex", "lookup")
INBOX_REASONS = ("fallback", "low_confidence", "escalation", "agent_correction")
INBOX_STATUSES = ("open", "confirmed", "out_of_scope", "ignored")
TRAIN_JOB_STATUSES = ("queued", "running", "succeeded", "failed")


class NluExample(Base):
    """One line of the training data: an intent example (in Rasa's annotation syntax, e.g.
    "tra [PE0400012345](customer_code)"), a synonym's surface form, a regex pattern or a lookup
    element. `name` is the intent, synonym value, regex or lookup name; `file` and `position`
    keep where the line lives in data/, so an export writes the same files back."""

    __tablename__ = "nlu_examples"
    __table_args__ = (
        CheckConstraint(_in_list("kind", NLU_KINDS), name="kind"),
        UniqueConstraint("kind", "name", "text"),
        Index("ix_nlu_examples_kind_name", "kind", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    file: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NluInboxItem(Base):
    """A customer message the bot may have misunderstood, waiting for an admin's decision.
    `group_key` is the message reduced to its words (no accents, digits or codes), so
    near-duplicates share one decision."""

    __tablename__ = "nlu_inbox"
    __table_args__ = (
        CheckConstraint(_in_list("reason", INBOX_REASONS), name="reason"),
        CheckConstraint(_in_list("status", INBOX_STATUSES), name="status"),
        Index("ix_nlu_inbox_status_group", "status", "group_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    group_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(20))
    conversation_id: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(20))
    predicted_intent: Mapped[str | None] = mapped_column(String(100))
    confidence: Mapped[float | None] = mapped_column(Float)
    # [{"name": ..., "confidence": ...}, ...] and Rasa-shaped entities, as the NLU returned them
    ranking: Mapped[list[Any]] = mapped_column(JSON)
    entities: Mapped[list[Any]] = mapped_column(JSON)
    suggested_intent: Mapped[str | None] = mapped_column(String(100))
    model_version: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="open")
    resolved_intent: Mapped[str | None] = mapped_column(String(100))
    example_id: Mapped[int | None] = mapped_column(ForeignKey("nlu_examples.id", ondelete="SET NULL"))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NluModelVersion(Base):
    """A trained NLU model: the archive of its folder with a SHA-256 checksum (a worker refuses
    an archive whose checksum does not match), and its evaluation on the held-out set."""

    __tablename__ = "nlu_models"

    version: Mapped[str] = mapped_column(String(100), primary_key=True)
    archive: Mapped[bytes] = mapped_column(LargeBinary)
    checksum: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    data_hash: Mapped[str] = mapped_column(String(64))
    # accuracy, macro_f1, weighted_f1, per-intent report, confusion matrix, test data hash
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NluActivation(Base):
    """Append-only history of which model version serves: the newest row is the active one, and
    a rollback activates the one before it. An override of the quality gate keeps its reason."""

    __tablename__ = "nlu_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(ForeignKey("nlu_models.version"), index=True)
    activated_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(100))
    override_reason: Mapped[str | None] = mapped_column(Text)
    gate: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NluTrainJob(Base):
    """A retraining started from the console or the CLI, run in a separate process; the console
    shows `stage` and `progress` live."""

    __tablename__ = "nlu_train_jobs"
    __table_args__ = (CheckConstraint(_in_list("status", TRAIN_JOB_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    stage: Mapped[str] = mapped_column(String(100), default="")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(ForeignKey("nlu_models.version", ondelete="SET NULL"))
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
