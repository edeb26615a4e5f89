"""a job's declared output: the dataset name it writes and the dataset id reserved for it at submit

The id is reserved at submit so the agent can put the verified bytes at ``<datasets root>/<id>`` and serve
them as soon as the job ends; the version is numbered when the job succeeds; ``settled`` once its job ended either way.

Revision ID: 0016_data2
Revises: 0014_jobs_submitted
Create Date: 2026-12-07 21:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016_data2'
down_revision = '0014_jobs_submitted'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_outputs',
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('settled', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id']),
    sa.PrimaryKeyConstraint('job_id'),
    sa.UniqueConstraint('dataset_id')
    )
    op.create_index('ix_job_outputs_settled', 'job_outputs', ['settled'])


def downgrade() -> None:
    op.drop_index('ix_job_outputs_settled', table_name='job_outputs')
    op.drop_table('job_outputs')
