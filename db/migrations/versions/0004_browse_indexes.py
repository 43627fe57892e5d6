"""indexes for browsing large campaigns

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:00:00

What the dashboard reads per campaign, served from indexes (bench/dashboard_scale.py measured
each at 100,000 steps):
  - step (campaign_id, id, trajectory_id, status, prompt_tokens, completion_tokens, cost_usd,
    created_at) covers the per-campaign step totals and the best-so-far points without reading
    each step's row, whose prompt JSON pushes these columns onto overflow pages; it starts with
    the columns of ix_step_campaign_created, which it replaces.
  - candidate (campaign_id, role, evaluation_id): the seed's and the best candidates' lookups,
    instead of walking the program-hash index.
  - step (parent_candidate_id): a program's children.
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

STEP_COVER = ["campaign_id", "id", "trajectory_id", "status", "prompt_tokens", "completion_tokens", "cost_usd",
              "created_at"]


def upgrade() -> None:
    # plain CREATE/DROP INDEX (no batch mode: SQLite needs no table copy for an index)
    op.create_index("ix_step_campaign_cover", "step", STEP_COVER)
    op.create_index("ix_step_parent_candidate", "step", ["parent_candidate_id"])
    op.drop_index("ix_step_campaign_created", table_name="step")
    op.create_index("ix_candidate_campaign_role", "candidate", ["campaign_id", "role", "evaluation_id"])


def downgrade() -> None:
    op.drop_index("ix_candidate_campaign_role", table_name="candidate")
    op.create_index("ix_step_campaign_created", "step", ["campaign_id", "id"])
    op.drop_index("ix_step_parent_candidate", table_name="step")
    op.drop_index("ix_step_campaign_cover", table_name="step")
