"""`discovery evaluate ID --holdout`: re-scoring the best programs on instances the search never saw."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import repository as repo
from db.engine import get_engine
from discovery.config import ConfigError
from flows.api import evaluate_campaign, run_campaign

HOLDOUT_TOY = str(Path(__file__).with_name("holdout_toy.py"))
pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_holdout_scores_are_stored_beside_the_search_and_reused():
    summary = run_campaign(HOLDOUT_TOY, chains=1, k=2, budget=8, seed=1)
    cid = summary.campaign.id
    before = repo.summarize(get_engine(), cid)
    rows = evaluate_campaign(cid, holdout=True, top=3)
    assert 1 <= len(rows) <= 3
    best = repo.top_candidates(get_engine(), cid, "maximize", 3)
    assert [r.candidate_id for r in rows] == [c.id for c, _ in best]
    for r, (cand, search_ev) in zip(rows, best):
        assert r.search_score == search_ev.score
        assert r.evaluation.status == "ok" and r.evaluation.metrics["split"] == "holdout"
        values = eval(cand.code.split("VALUES = ", 1)[1].splitlines()[0])  # the test's own program
        assert r.evaluation.score == pytest.approx(-((values[0] - 5) ** 2 + (values[1] - 1) ** 2))
    # stored separately: the search's view is unchanged and asking again reuses the rows
    after = repo.summarize(get_engine(), cid)
    assert (after.best_score, after.by_status, after.evaluations) == (before.best_score, before.by_status, before.evaluations)
    again = evaluate_campaign(cid, holdout=True, top=3)
    assert [r.evaluation_id for r in again] == [r.evaluation_id for r in rows]
    assert repo.count_rows(get_engine(), cid)["evaluations"] == before.evaluations + len(rows)


def test_recheck_uses_search_instances_and_problems_without_holdout_say_so():
    summary = run_campaign(HOLDOUT_TOY, chains=1, k=2, budget=4, seed=2)
    rows = evaluate_campaign(summary.campaign.id, holdout=False, top=1)
    assert rows[0].evaluation.metrics["split"] == "search"
    assert rows[0].evaluation.score == rows[0].search_score
    plain = run_campaign("erdos_min_overlap", chains=1, k=1, budget=1, seed=0)
    with pytest.raises(ConfigError, match="keeps no held-out instances"):
        evaluate_campaign(plain.campaign.id, holdout=True)
