"""usage records found by their start: the provider's and operator's last-day charts in the console

Without it each chart refresh scans every usage record (bench/console.py: provider page 225 ms, operator
operations 346 ms p95 at 100,000 jobs, against the 200 ms target).

Revision ID: 0018_usage_start
Revises: 0017_fractions
Create Date: 2026-12-07 22:05:00
"""
from alembic import op

revision = '0018_usage_start'
down_revision = '0017_fractions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_usage_start', 'usage_records', ['start'])


def downgrade() -> None:
    op.drop_index('ix_usage_start', table_name='usage_records')
