"""price books: one series of versions per owner (the operator's, and each provider's)

Revision ID: 0009_prices
Revises: 0008_attempts
Create Date: 2026-12-06 05:30:00

A provider's book no longer shares the operator's version numbers and start
times, so no owner's book can block or shadow another's publishing.  Existing
books become the operator's series (owner '').  The table is rebuilt (its key
changes), which is cheap: it holds one row per published book.
"""
import sqlalchemy as sa
from alembic import op

revision = '0009_prices'
down_revision = '0008_attempts'
branch_labels = None
depends_on = None

_COLUMNS = "version, effective_us, created_at, created_by, body"


def upgrade() -> None:
    op.create_table('price_books_owned',
    sa.Column('owner', sa.String(length=140), nullable=False, server_default=''),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_us', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('owner', 'version')
    )
    op.execute(f"INSERT INTO price_books_owned (owner, {_COLUMNS}) SELECT '', {_COLUMNS} FROM price_books")  # nosec B608  # constant columns
    op.drop_table('price_books')
    op.rename_table('price_books_owned', 'price_books')


def downgrade() -> None:
    op.create_table('price_books_global',
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_us', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    # Only the operator's series fits the old single series; providers' books are dropped.
    op.execute(f"INSERT INTO price_books_global ({_COLUMNS}) SELECT {_COLUMNS} FROM price_books WHERE owner = ''")  # nosec B608  # constant columns
    op.drop_table('price_books')
    op.rename_table('price_books_global', 'price_books')
