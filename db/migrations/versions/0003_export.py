"""exports: export

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:00:00

One row per `discovery export`: who ran it, when, its parameters (enough to run it again), the
output folder, row counts, dropped counts, and every written file with its sha256. The only
foreign key points at the table itself (a replay -> the export it replays), so the table creates
and drops in one statement on PostgreSQL as on SQLite. The column is `username`, not `user`
(a reserved word in PostgreSQL).
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('export',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('out_dir', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('row_counts', sa.JSON(), nullable=False),
    sa.Column('dropped', sa.JSON(), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('replay_of', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['replay_of'], ['export.id'], name=op.f('fk_export_replay_of_export'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export'))
    )


def downgrade() -> None:
    op.drop_table('export')
