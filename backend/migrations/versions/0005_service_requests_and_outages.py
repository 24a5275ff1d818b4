"""Service requests with their history, the service catalogue, ticket counters, outage
incidents, reports, subscriptions and planned outages.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outage_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=20), nullable=False),
        sa.Column("ward", sa.String(length=100), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("province", sa.String(length=100), nullable=False),
        sa.Column("area_key", sa.String(length=120), nullable=False),
        sa.Column("cause", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expected_restore_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'restored')", name=op.f("ck_outage_incidents_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outage_incidents")),
        sa.UniqueConstraint("ref", name=op.f("uq_outage_incidents_ref")),
    )
    op.create_index(
        "ix_outage_incidents_area", "outage_incidents", ["area_key", "status"], unique=False
    )

    op.create_table(
        "planned_outages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ward", sa.String(length=100), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("province", sa.String(length=100), nullable=False),
        sa.Column("area_key", sa.String(length=120), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planned_outages")),
    )
    op.create_index(
        "ix_planned_outages_area", "planned_outages", ["area_key", "start_at"], unique=False
    )

    op.create_table(
        "service_types",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name_vi", sa.String(length=120), nullable=False),
        sa.Column("name_en", sa.String(length=120), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("needs_existing_contract", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_service_types")),
    )
    op.create_table(
        "ticket_counters",
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name=op.f("pk_ticket_counters")),
    )
    op.create_table(
        "outage_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=20), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("location_text", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_outage_reports_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["outage_incidents.id"],
            name=op.f("fk_outage_reports_incident_id_outage_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outage_reports")),
        sa.UniqueConstraint("ref", name=op.f("uq_outage_reports_ref")),
    )
    op.create_index(
        op.f("ix_outage_reports_incident_id"), "outage_reports", ["incident_id"], unique=False
    )

    op.create_table(
        "outage_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=5), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["outage_incidents.id"],
            name=op.f("fk_outage_subscriptions_incident_id_outage_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outage_subscriptions")),
        sa.UniqueConstraint(
            "incident_id",
            "channel",
            "recipient_id",
            name=op.f("uq_outage_subscriptions_incident_id_channel_recipient_id"),
        ),
    )
    op.create_index(
        op.f("ix_outage_subscriptions_incident_id"),
        "outage_subscriptions",
        ["incident_id"],
        unique=False,
    )

    op.create_table(
        "service_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.String(length=20), nullable=False),
        sa.Column("service_type", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=255), nullable=True),
        sa.Column("contact_phone", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("preferred_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=5), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "service_type IN ('new_connection', 'meter_inspection', 'meter_relocation', 'contract_change', 'ownership_transfer', 'reconnection', 'usage_purpose_change')",
            name=op.f("ck_service_requests_service_type"),
        ),
        sa.CheckConstraint(
            "status IN ('received', 'in_progress', 'scheduled', 'completed', 'cancelled', 'rejected')",
            name=op.f("ck_service_requests_status"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_service_requests_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["service_type"],
            ["service_types.code"],
            name=op.f("fk_service_requests_service_type_service_types"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_requests")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_service_requests_ticket_id")),
    )
    op.create_index(
        op.f("ix_service_requests_customer_id"), "service_requests", ["customer_id"], unique=False
    )

    op.create_table(
        "service_request_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=60), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["service_requests.id"],
            name=op.f("fk_service_request_events_request_id_service_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_request_events")),
    )
    op.create_index(
        op.f("ix_service_request_events_request_id"),
        "service_request_events",
        ["request_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_service_request_events_request_id"), table_name="service_request_events")

    op.drop_table("service_request_events")
    op.drop_index(op.f("ix_service_requests_customer_id"), table_name="service_requests")

    op.drop_table("service_requests")
    op.drop_index(op.f("ix_outage_subscriptions_incident_id"), table_name="outage_subscriptions")

    op.drop_table("outage_subscriptions")
    op.drop_index(op.f("ix_outage_reports_incident_id"), table_name="outage_reports")

    op.drop_table("outage_reports")
    op.drop_table("ticket_counters")
    op.drop_table("service_types")
    op.drop_index("ix_planned_outages_area", table_name="planned_outages")

    op.drop_table("planned_outages")
    op.drop_index("ix_outage_incidents_area", table_name="outage_incidents")

    op.drop_table("outage_incidents")
