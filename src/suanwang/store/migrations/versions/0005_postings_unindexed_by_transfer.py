"""ledger: drop the postings index on transfer_key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:45:00

Nothing looks postings up by transfer: the only reader is reconciliation,
which aggregates the whole table.  Transfer keys arrive in random order, so
each charge's postings dirtied pages all over that index (about 8 % of a
rating's cost on SQLite at 100,000 records; bench/ledger.py).
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ledger_postings', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_postings_transfer')


def downgrade() -> None:
    with op.batch_alter_table('ledger_postings', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_postings_transfer', ['transfer_key'], unique=False)
