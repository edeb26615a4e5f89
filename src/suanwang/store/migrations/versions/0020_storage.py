"""staged replicas collected when nobody needs them, their storage metered by the hour; transfer generations;
directory datasets (a manifest hash, an archive that transfers verify)

Revision ID: 0020_storage
Revises: 0018_usage_start
Create Date: 2026-12-08 00:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0020_storage'
down_revision = '0018_usage_start'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dataset_replicas') as b:
        b.add_column(sa.Column('transfer_id', sa.String(length=40), nullable=True))
        b.add_column(sa.Column('generation', sa.Integer(), server_default='0', nullable=False))
        b.add_column(sa.Column('arrived_at', sa.Float(), nullable=True))
        b.add_column(sa.Column('last_used_at', sa.Float(), nullable=True))
        b.add_column(sa.Column('metered_until', sa.Float(), nullable=True))
        b.add_column(sa.Column('gc_at', sa.Float(), nullable=True))
    with op.batch_alter_table('transfers') as b:
        b.add_column(sa.Column('generation', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('datasets') as b:
        b.add_column(sa.Column('kind', sa.String(length=10), server_default='file', nullable=False))
        b.add_column(sa.Column('archive_sha256', sa.String(length=64), nullable=True))
    op.create_table('storage_usage',
    sa.Column('transfer_id', sa.String(length=40), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('hour', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('site', sa.String(length=100), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('start', sa.Float(), nullable=False),
    sa.Column('end', sa.Float(), nullable=False),
    sa.Column('recorded_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('transfer_id', 'generation', 'hour')
    )


def downgrade() -> None:
    op.drop_table('storage_usage')
    with op.batch_alter_table('datasets') as b:
        b.drop_column('archive_sha256')
        b.drop_column('kind')
    with op.batch_alter_table('transfers') as b:
        b.drop_column('generation')
    with op.batch_alter_table('dataset_replicas') as b:
        for name in ('gc_at', 'metered_until', 'last_used_at', 'arrived_at', 'generation', 'transfer_id'):
            b.drop_column(name)
