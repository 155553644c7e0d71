"""breaker event details (the numbers behind a trading-state change)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 17:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('breaker_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('breaker_events', schema=None) as batch_op:
        batch_op.drop_column('details')
