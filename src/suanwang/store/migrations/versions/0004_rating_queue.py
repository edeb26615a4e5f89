"""usage: the rating worker's queue becomes a table of unrated usage ids, replacing the ``rated`` flag

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 23:30:00

Claiming a batch flipped ``usage_records.rated``; on PostgreSQL that rewrote
each record and its four indexes (about 30 us of the 145 us a record took to
rate).  ``usage_unrated`` holds one id per unrated record; a claim deletes
them.  Records not yet rated when this runs are queued; downgrade restores
the flag from the queue.
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('usage_unrated',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.execute("INSERT INTO usage_unrated (id) SELECT id FROM usage_records WHERE rated = false")
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_rated')
        batch_op.drop_column('rated')


def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rated', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.create_index('ix_usage_rated', ['rated', 'id'], unique=False)
    op.execute("UPDATE usage_records SET rated = false WHERE id IN (SELECT id FROM usage_unrated)")
    op.drop_table('usage_unrated')
