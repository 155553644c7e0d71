"""promoted configurations: versions of a strategy's parameters promoted by a study, champion/retired/reverted

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.persistence.types


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'promoted_configs',
        sa.Column('version', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('strategy', sa.String(length=64), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('promoted_at', core.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('source_study', sa.String(length=200), nullable=False),
        sa.Column('source_key', sa.String(length=64), nullable=False),
        sa.Column('expectation', sa.JSON(), nullable=False),
        sa.Column('test', sa.JSON(), nullable=False),
        sa.Column('previous_version', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('changed_at', core.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('version'),
        sa.UniqueConstraint('source_key'),
    )
    with op.batch_alter_table('promoted_configs', schema=None) as batch_op:
        batch_op.create_index('ix_promoted_configs_strategy_status', ['strategy', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('promoted_configs', schema=None) as batch_op:
        batch_op.drop_index('ix_promoted_configs_strategy_status')
    op.drop_table('promoted_configs')
