"""Relational state: SQLAlchemy 2 tables, engine setup and Alembic migrations."""
