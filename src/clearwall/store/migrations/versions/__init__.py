"""Alembic revision scripts, oldest first; the initial revision creates every table."""
