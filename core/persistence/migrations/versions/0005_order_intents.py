"""order intents: orders written before they are submitted (in doubt until the broker's answer is in the ledger)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.persistence.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _money(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, core.persistence.types.Money(precision=20, scale=6), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'order_intents',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('client_order_id', sa.String(length=128), nullable=False),
        sa.Column('broker', sa.String(length=32), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('iteration_id', sa.String(length=96), nullable=False),
        sa.Column('symbol', sa.String(length=16), nullable=False),
        sa.Column('side', sa.String(length=8), nullable=False),
        sa.Column('order_type', sa.String(length=16), nullable=False),
        _money('quantity', False),
        _money('limit_price', True),
        _money('stop_price', True),
        _money('stop_loss', True),
        _money('take_profit', True),
        _money('reference_price', False),
        sa.Column('strategy', sa.String(length=64), nullable=False),
        sa.Column('confidence', sa.Double(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', core.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('lookups', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('resolved_at', core.persistence.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('client_order_id'),
    )
    with op.batch_alter_table('order_intents', schema=None) as batch_op:
        batch_op.create_index('ix_order_intents_broker_status', ['broker', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_order_intents_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('order_intents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_intents_run_id'))
        batch_op.drop_index('ix_order_intents_broker_status')
    op.drop_table('order_intents')
