"""datasets at sites, their replicas, staged transfers, workflow runs and steps

Revision ID: 0012_datasets
Revises: 0011_market
Create Date: 2026-12-07 20:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_datasets'
down_revision = '0011_market'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('shared_with', sa.JSON(), nullable=False),
    sa.Column('source_job', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'name', 'version')
    )
    op.create_table('dataset_replicas',
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('site', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('reported_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id']),
    sa.ForeignKeyConstraint(['site'], ['sites.name']),
    sa.PrimaryKeyConstraint('dataset_id', 'site')
    )
    op.create_table('transfers',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('target', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('bytes_moved', sa.BigInteger(), nullable=False),
    sa.Column('predicted_s', sa.Float(), nullable=False),
    sa.Column('measured_s', sa.Float(), nullable=True),
    sa.Column('reason', sa.String(length=2000), nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dataset_id', 'target')
    )
    op.create_table('job_inputs',
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id']),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id']),
    sa.PrimaryKeyConstraint('job_id', 'dataset_id')
    )
    op.create_table('workflow_runs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('reason', sa.String(length=2000), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_workflow_runs_tenant', 'workflow_runs', ['tenant_id', 'created_at'])
    op.create_table('workflow_steps',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('jobs', sa.JSON(), nullable=False),
    sa.Column('reason', sa.String(length=2000), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id']),
    sa.PrimaryKeyConstraint('run_id', 'name')
    )


def downgrade() -> None:
    op.drop_table('workflow_steps')
    op.drop_index('ix_workflow_runs_tenant', table_name='workflow_runs')
    op.drop_table('workflow_runs')
    op.drop_table('job_inputs')
    op.drop_table('transfers')
    op.drop_table('dataset_replicas')
    op.drop_table('datasets')
