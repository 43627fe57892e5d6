"""training runs: training_run

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 13:00:00

One row per `discovery train sft|dpo|grpo`: the method, the base model, where the trained model
was written, what it was trained on (export id and file hashes, or the GRPO prompt source), the
resolved settings, the trainer's metrics, the reward campaigns (GRPO), status and error. No
foreign keys: an export or campaign it names may be deleted without losing the record.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('training_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('base_model', sa.Text(), nullable=False),
    sa.Column('output_dir', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('reward_campaigns', sa.JSON(), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_run'))
    )


def downgrade() -> None:
    op.drop_table('training_run')
