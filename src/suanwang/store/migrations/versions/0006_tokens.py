"""tokens: expiry, revocation time, rotation link; one-use agent enrolments

Revision ID: 0006_tokens
Revises: 0005
Create Date: 2026-12-06 05:10:00

A token may now expire (``expires_at``), records when it was revoked and
which token replaced it on rotation.  ``enrolments`` holds one-use tokens
that a new agent trades for its site's agent token.
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_tokens'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('rotated_to', sa.String(length=64), nullable=True))
    op.create_table('enrolments',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('site', sa.String(length=100), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('issued_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('used_at', sa.Float(), nullable=True),
    sa.Column('token_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['site'], ['sites.name'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )


def downgrade() -> None:
    op.drop_table('enrolments')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('rotated_to')
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('expires_at')
