"""Payment links (bills or service fees) and the payments that settle them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txn_ref", sa.String(length=32), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("response_code", sa.String(length=2), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=5), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_links")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_payment_links_customer_id_customers")
        ),
        sa.UniqueConstraint("txn_ref", name=op.f("uq_payment_links_txn_ref")),
        sa.CheckConstraint("purpose IN ('bills', 'fee')", name=op.f("ck_payment_links_purpose")),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'expired', 'cancelled', 'failed')",
            name=op.f("ck_payment_links_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_links_amount_positive")),
        sa.CheckConstraint(
            "purpose <> 'fee' OR reference IS NOT NULL",
            name=op.f("ck_payment_links_fee_has_reference"),
        ),
        sa.CheckConstraint(
            "purpose <> 'bills' OR customer_id IS NOT NULL",
            name=op.f("ck_payment_links_bills_have_customer"),
        ),
        sa.CheckConstraint(
            "(status = 'paid' AND paid_at IS NOT NULL) OR (status <> 'paid' AND paid_at IS NULL)",
            name=op.f("ck_payment_links_paid_at_matches_status"),
        ),
    )
    op.create_index(op.f("ix_payment_links_customer_id"), "payment_links", ["customer_id"])
    op.create_index(op.f("ix_payment_links_reference"), "payment_links", ["reference"])

    op.create_table(
        "payment_link_bills",
        sa.Column("payment_link_id", sa.Integer(), nullable=False),
        sa.Column("bill_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("payment_link_id", "bill_id", name=op.f("pk_payment_link_bills")),
        sa.ForeignKeyConstraint(
            ["payment_link_id"],
            ["payment_links.id"],
            name=op.f("fk_payment_link_bills_payment_link_id_payment_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bill_id"], ["bills.id"], name=op.f("fk_payment_link_bills_bill_id_bills")
        ),
    )
    op.create_index(op.f("ix_payment_link_bills_bill_id"), "payment_link_bills", ["bill_id"])

    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txn_ref", sa.String(length=32), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("gateway_txn_no", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("bank_code", sa.String(length=20), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raw_callback", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.ForeignKeyConstraint(
            ["txn_ref"], ["payment_links.txn_ref"], name=op.f("fk_payments_txn_ref_payment_links")
        ),
        sa.UniqueConstraint("txn_ref", name=op.f("uq_payments_txn_ref")),
        sa.UniqueConstraint(
            "gateway", "gateway_txn_no", name=op.f("uq_payments_gateway_gateway_txn_no")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
    )


def downgrade() -> None:
    op.drop_table("payments")
    op.drop_index(op.f("ix_payment_link_bills_bill_id"), table_name="payment_link_bills")
    op.drop_table("payment_link_bills")
    op.drop_index(op.f("ix_payment_links_reference"), table_name="payment_links")
    op.drop_index(op.f("ix_payment_links_customer_id"), table_name="payment_links")
    op.drop_table("payment_links")
