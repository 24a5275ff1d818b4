"""Initial schema: customers, contracts, tariffs, bills, channel links, verification attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from backend.models: a migration must keep describing the
# schema as it was at this revision, whatever the models become later. Names are wrapped in
# op.f() because they are final: the models' naming convention must not be applied again.
TARIFF_CODES = "'residential', 'business'"


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("ward", sa.String(length=100), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("province", sa.String(length=100), nullable=False),
        sa.Column("tariff_code", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("code", name=op.f("uq_customers_code")),
        sa.CheckConstraint("code = upper(code)", name=op.f("ck_customers_code_upper")),
        sa.CheckConstraint(
            f"tariff_code IN ({TARIFF_CODES})", name=op.f("ck_customers_tariff_code")
        ),
    )

    op.create_table(
        "contracts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("contract_number", sa.String(length=32), nullable=False),
        sa.Column("meter_serial", sa.String(length=32), nullable=False),
        sa.Column("tariff_code", sa.String(length=20), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contracts")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_contracts_customer_id_customers")
        ),
        sa.UniqueConstraint("contract_number", name=op.f("uq_contracts_contract_number")),
        sa.UniqueConstraint("meter_serial", name=op.f("uq_contracts_meter_serial")),
        sa.CheckConstraint(
            f"tariff_code IN ({TARIFF_CODES})", name=op.f("ck_contracts_tariff_code")
        ),
    )
    op.create_index(op.f("ix_contracts_customer_id"), "contracts", ["customer_id"])

    op.create_table(
        "tariffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("vat_percent", sa.Integer(), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tariffs")),
        sa.UniqueConstraint("code", "effective_from", name=op.f("uq_tariffs_code_effective_from")),
        sa.CheckConstraint(f"code IN ({TARIFF_CODES})", name=op.f("ck_tariffs_code")),
        sa.CheckConstraint(
            "vat_percent >= 0 AND vat_percent <= 100", name=op.f("ck_tariffs_vat_percent")
        ),
    )

    op.create_table(
        "bills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kwh", sa.Integer(), nullable=False),
        sa.Column("amount_before_vat", sa.BigInteger(), nullable=False),
        sa.Column("vat_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bills")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_bills_customer_id_customers")
        ),
        sa.UniqueConstraint("customer_id", "period", name=op.f("uq_bills_customer_id_period")),
        sa.CheckConstraint("status IN ('unpaid', 'paid')", name=op.f("ck_bills_status")),
        sa.CheckConstraint("kwh >= 0", name=op.f("ck_bills_kwh_not_negative")),
        sa.CheckConstraint(
            "amount = amount_before_vat + vat_amount", name=op.f("ck_bills_amount_total")
        ),
        sa.CheckConstraint(
            "(status = 'paid' AND paid_at IS NOT NULL) OR (status = 'unpaid' AND paid_at IS NULL)",
            name=op.f("ck_bills_paid_at_matches_status"),
        ),
    )

    op.create_table(
        "channel_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_links")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_channel_links_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "channel",
            "sender_id",
            "customer_id",
            name=op.f("uq_channel_links_channel_sender_id_customer_id"),
        ),
    )
    op.create_index(op.f("ix_channel_links_customer_id"), "channel_links", ["customer_id"])

    op.create_table(
        "verification_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("customer_code", sa.String(length=20), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_attempts")),
    )
    op.create_index(
        op.f("ix_verification_attempts_lookup"),
        "verification_attempts",
        ["channel", "sender_id", "customer_code", "created_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_verification_attempts_lookup"), table_name="verification_attempts")
    op.drop_table("verification_attempts")
    op.drop_index(op.f("ix_channel_links_customer_id"), table_name="channel_links")
    op.drop_table("channel_links")
    op.drop_table("bills")
    op.drop_table("tariffs")
    op.drop_index(op.f("ix_contracts_customer_id"), table_name="contracts")
    op.drop_table("contracts")
    op.drop_table("customers")
