"""Alembic migrations of the backend schema; run them with `backend.db.upgrade_database()`."""
