"""shared accelerators: a pool's card sharing, and the fraction of a card a job holds

Revision ID: 0017_fractions
Revises: 0016_data2
Create Date: 2026-12-07 21:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0017_fractions'
down_revision = '0016_data2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite rebuilds the table, PostgreSQL alters it in place
    with op.batch_alter_table('pools') as batch:
        batch.add_column(sa.Column('sharing', sa.JSON(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('device_share', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('device_share')
    with op.batch_alter_table('pools') as batch:
        batch.drop_column('sharing')
