"""shadow matrices: the shadow ledger packed as one row per iteration (symbols x strategies matrices)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 21:00:00

Runs recorded before keep their ``shadow_signals`` rows (one per symbol and iteration), which the readers still
read; new iterations write ``shadow_matrices`` only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.persistence.types


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'shadow_matrices',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('iteration_id', sa.String(length=96), nullable=False),
        sa.Column('as_of', core.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('strategies', sa.JSON(), nullable=False),
        sa.Column('symbols', sa.JSON(), nullable=False),
        sa.Column('selected', sa.JSON(), nullable=False),
        sa.Column('closes', sa.LargeBinary(), nullable=False),
        sa.Column('codes', sa.LargeBinary(), nullable=False),
        sa.Column('strengths', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['iteration_id'], ['iterations.id'], ),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('iteration_id'),
    )
    with op.batch_alter_table('shadow_matrices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shadow_matrices_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('shadow_matrices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shadow_matrices_run_id'))
    op.drop_table('shadow_matrices')
