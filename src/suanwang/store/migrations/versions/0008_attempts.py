"""metering: one row per attempt (where it was leased, how it ended), and usage rated without a charge

Revision ID: 0008_attempts
Revises: 0007_chain
Create Date: 2026-12-06 05:00:00

Usage and logs are accepted only for an attempt leased to the reporting
agent's site and pool, so the platform records each lease.  Jobs that were
leased before this runs get a row for their latest attempt (where they ran,
as the job row says), still open if the job is running.
``usage_records.unbilled_reason`` says why rating booked no charge
(``lost_attempt``: the platform had declared the attempt lost).
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_attempts'
down_revision = '0007_chain'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attempts',
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('attempt', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('site', sa.String(length=100), nullable=False),
    sa.Column('pool', sa.String(length=100), nullable=False),
    sa.Column('leased_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('final_report_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('job_id', 'attempt')
    )
    op.execute(
        "INSERT INTO attempts (job_id, attempt, site, pool, leased_at, ended_at, outcome, final_report_at) "
        "SELECT id, attempt, site, pool, COALESCE(started_at, placed_at, submitted_at), "
        "CASE WHEN state = 'running' THEN NULL ELSE finished_at END, "
        "CASE WHEN state = 'running' THEN NULL ELSE state END, "
        "CASE WHEN state = 'running' THEN NULL ELSE finished_at END "
        "FROM jobs WHERE attempt > 0 AND site IS NOT NULL AND pool IS NOT NULL AND state <> 'placed'"
    )
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unbilled_reason', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('unbilled_reason')
    op.drop_table('attempts')
