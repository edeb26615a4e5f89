"""jobs listed newest first across tenants (the operator's console, `suanwang jobs` as admin) by an index

Without it every page of the all-tenant jobs list sorts the whole table: 376 ms p95 at 100,000 jobs
(bench/console.py), against the 200 ms target.

Revision ID: 0014_jobs_submitted
Revises: 0013_quantum
Create Date: 2026-12-07 21:30:00
"""
from alembic import op

revision = '0014_jobs_submitted'
down_revision = '0013_quantum'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_submitted', 'jobs', ['submitted_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_jobs_submitted', table_name='jobs')
