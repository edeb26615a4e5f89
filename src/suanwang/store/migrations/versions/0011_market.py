"""market: orders on the board, one claim row per cleared session, contract lines

Revision ID: 0011_market
Revises: 0010_idempotency
Create Date: 2026-12-07 20:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011_market'
down_revision = '0010_idempotency'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('market_orders',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.String(length=40), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_market_orders_session', 'market_orders', ['session_id', 'state'], unique=False)
    op.create_table('market_clears',
    sa.Column('session_id', sa.String(length=40), nullable=False),
    sa.Column('cleared_at', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('welfare_fen', sa.Integer(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('session_id')
    )
    op.create_table('market_contracts',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('session_id', sa.String(length=40), nullable=False),
    sa.Column('bid_id', sa.String(length=64), nullable=False),
    sa.Column('consumer', sa.String(length=64), nullable=False),
    sa.Column('ask_id', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('site', sa.String(length=100), nullable=False),
    sa.Column('resource_class', sa.String(length=20), nullable=False),
    sa.Column('slot_start', sa.Float(), nullable=False),
    sa.Column('slot_end', sa.Float(), nullable=False),
    sa.Column('units', sa.Integer(), nullable=False),
    sa.Column('buyer_price_cf', sa.Integer(), nullable=False),
    sa.Column('seller_price_cf', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_market_contracts_site_slot', 'market_contracts', ['site', 'slot_start'], unique=False)
    op.create_index('ix_market_contracts_consumer', 'market_contracts', ['consumer'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_market_contracts_consumer', table_name='market_contracts')
    op.drop_index('ix_market_contracts_site_slot', table_name='market_contracts')
    op.drop_table('market_contracts')
    op.drop_table('market_clears')
    op.drop_index('ix_market_orders_session', table_name='market_orders')
    op.drop_table('market_orders')
