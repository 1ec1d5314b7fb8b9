"""Alembic migrations of the clearwall store, shipped inside the package."""
