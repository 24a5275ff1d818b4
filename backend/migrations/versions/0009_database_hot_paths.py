"""Database hot paths: outage reports without a long incident lock, cheaper outbox claims, the
verification throttle's per-code index.

- `outage_incidents.report_count` / `last_report_at`, kept in place by each report (backfilled
  here), and `lapsed_at` for a reports-only incident that went quiet and was succeeded by a new
  one; a partial unique index allows one open (active, not lapsed) incident per ward.
- Partial indexes on the pending outbox rows.
- `verification_attempts (customer_code, created_at)`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_INCIDENT = "status = 'active' AND lapsed_at IS NULL"
PENDING = "status = 'pending'"


def upgrade() -> None:
    with op.batch_alter_table("outage_incidents") as batch:
        batch.add_column(sa.Column("report_count", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("last_report_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lapsed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE outage_incidents SET "
        "report_count = (SELECT count(*) FROM outage_reports r WHERE r.incident_id = outage_incidents.id), "
        "last_report_at = (SELECT max(r.created_at) FROM outage_reports r WHERE r.incident_id = outage_incidents.id)"
    )
    # Before this revision a ward could hold several active incidents (an old cluster stayed
    # active when a new one opened): all but the newest of each ward count as lapsed.
    op.execute(
        "UPDATE outage_incidents SET lapsed_at = started_at "
        "WHERE status = 'active' AND EXISTS (SELECT 1 FROM outage_incidents newer "
        "WHERE newer.area_key = outage_incidents.area_key AND newer.status = 'active' "
        "AND (newer.started_at > outage_incidents.started_at "
        "OR (newer.started_at = outage_incidents.started_at AND newer.id > outage_incidents.id)))"
    )
    op.create_index(
        "ux_outage_incidents_open",
        "outage_incidents",
        ["area_key"],
        unique=True,
        postgresql_where=sa.text(OPEN_INCIDENT),
        sqlite_where=sa.text(OPEN_INCIDENT),
    )
    op.create_index(
        "ix_outbox_pending_chat",
        "outbox",
        ["channel", "recipient_id", "id"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    op.create_index("ix_outbox_pending", "outbox", ["id"], postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))
    op.create_index("ix_verification_attempts_code", "verification_attempts", ["customer_code", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_verification_attempts_code", table_name="verification_attempts")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_index("ix_outbox_pending_chat", table_name="outbox")
    op.drop_index("ux_outage_incidents_open", table_name="outage_incidents")
    with op.batch_alter_table("outage_incidents") as batch:
        batch.drop_column("lapsed_at")
        batch.drop_column("last_report_at")
        batch.drop_column("report_count")
