"""comparisons: comparison and comparison_run

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 00:00:00

A comparison runs several strategies x seeds at one budget; each run is one campaign. Foreign
keys point one way only (comparison_run -> comparison, comparison_run -> campaign), so the
tables create and drop in order on PostgreSQL as on SQLite.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('comparison',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('problem', sa.String(length=200), nullable=False),
    sa.Column('strategies', sa.JSON(), nullable=False),
    sa.Column('seeds', sa.JSON(), nullable=False),
    sa.Column('budget', sa.Integer(), nullable=False),
    sa.Column('target_pct', sa.Float(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('plot_path', sa.Text(), nullable=False),
    sa.Column('results', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comparison'))
    )
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comparison_problem'), ['problem'], unique=False)

    op.create_table('comparison_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('strategy', sa.String(length=50), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('wall_s', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], name=op.f('fk_comparison_run_campaign_id_campaign'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], name=op.f('fk_comparison_run_comparison_id_comparison'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comparison_run')),
    sa.UniqueConstraint('comparison_id', 'strategy', 'seed', name=op.f('uq_comparison_run_comparison_id_strategy_seed'))
    )
    with op.batch_alter_table('comparison_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comparison_run_comparison_id'), ['comparison_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('comparison_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_comparison_run_comparison_id'))

    op.drop_table('comparison_run')
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_comparison_problem'))

    op.drop_table('comparison')
