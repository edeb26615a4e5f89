"""quantum pools: a pool's backends, and shots on usage records

Revision ID: 0013_quantum
Revises: 0012_datasets
Create Date: 2026-12-07 20:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_quantum'
down_revision = '0012_datasets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite rebuilds the table, PostgreSQL alters it in place
    with op.batch_alter_table('pools') as batch:
        batch.add_column(sa.Column('quantum', sa.JSON(), nullable=True))
    with op.batch_alter_table('usage_records') as batch:
        batch.add_column(sa.Column('shots', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('usage_records') as batch:
        batch.drop_column('shots')
    with op.batch_alter_table('pools') as batch:
        batch.drop_column('quantum')
