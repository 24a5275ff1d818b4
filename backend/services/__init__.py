"""The backend's public operations. Each one owns its transaction and returns frozen dataclasses,
so callers (Rasa actions, the REST API) never hold ORM objects or sessions."""

from backend.services.accounts import (
    CustomerInfo,
    Verification,
    VerificationStatus,
    find_customer,
    is_linked,
    linked_customers,
    lock_status,
    unlink,
    verify_ownership,
)
from backend.services.billing import (
    BillInfo,
    bill_for_period,
    bill_history,
    latest_bill,
    unpaid_bills,
)

__all__ = [
    "BillInfo",
    "CustomerInfo",
    "Verification",
    "VerificationStatus",
    "bill_for_period",
    "bill_history",
    "find_customer",
    "is_linked",
    "latest_bill",
    "linked_customers",
    "lock_status",
    "unlink",
    "unpaid_bills",
    "verify_ownership",
]
