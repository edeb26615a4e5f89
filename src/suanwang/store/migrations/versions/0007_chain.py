"""chains: hash-chain links and the sealer's gaps; the audit trail and the links become append-only

Revision ID: 0007_chain
Revises: 0006_tokens
Create Date: 2026-12-06 05:10:00

``chain_links`` holds the audit and ledger chains (services.chain seals
committed rows into them from the control loop); ``chain_gaps`` the ids the
sealer passed over while a transaction holding them was still open.  As
migration 0002 does for postings, triggers refuse UPDATE and DELETE on
``audit`` and ``chain_links`` in the database itself, on SQLite and
PostgreSQL (the gaps are the sealer's scratch and stay writable).
"""
import sqlalchemy as sa
from alembic import op

revision = '0007_chain'
down_revision = '0006_tokens'
branch_labels = None
depends_on = None

APPEND_ONLY = ('audit', 'chain_links')


def upgrade() -> None:
    op.create_table('chain_gaps',
    sa.Column('chain', sa.String(length=16), nullable=False),
    sa.Column('row_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('seen_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('chain', 'row_id')
    )
    op.create_table('chain_links',
    sa.Column('chain', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('row_id', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('sealed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('chain', 'seq'),
    sa.UniqueConstraint('chain', 'row_id')
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("""
            CREATE OR REPLACE FUNCTION suanwang_sealed_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: sealed records are never updated or deleted', TG_TABLE_NAME;
            END $$ LANGUAGE plpgsql""")
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION suanwang_sealed_append_only()")
        return
    for table in APPEND_ONLY:
        for action in ('UPDATE', 'DELETE'):
            op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: sealed records are never changed'); END")


def downgrade() -> None:
    for table in APPEND_ONLY:
        if op.get_bind().dialect.name == 'postgresql':
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP FUNCTION IF EXISTS suanwang_sealed_append_only()")
    op.drop_table('chain_links')
    op.drop_table('chain_gaps')
