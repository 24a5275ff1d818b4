"""Backend store: SQLAlchemy models, the services that own them, migrations and seed data."""
