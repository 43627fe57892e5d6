"""Every shipped problem runs a campaign with the offline proposer and stores scored evaluations."""

from __future__ import annotations

import pytest

from db import repository as repo
from db.engine import get_engine
from flows.api import run_campaign
from problems import get_problem

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.parametrize("name", ["erdos_min_overlap", "circle_packing", "autocorrelation_first", "qubit_routing"])
def test_offline_campaign_on_each_problem(name):
    summary = run_campaign(name, chains=1, k=2, budget=4, seed=1)
    problem = get_problem(name)
    assert summary.campaign.status == "completed" and summary.steps == 4
    assert summary.seed_score is not None, "the seed program of every problem runs and scores"
    assert summary.unevaluated_candidates == 0
    cands = repo.candidates_of(get_engine(), summary.campaign.id)
    assert all(ev is not None and ev.evaluator_version == problem.evaluator_version for _, ev in cands)
    assert all(ev.backend in ("process", "bwrap") for _, ev in cands)
    assert summary.best_score is not None


LASSO_SMALL = """
import dataclasses
from problems import get_problem
from problems.lasso_path.evaluator import LassoEvaluator, Settings
from problems.lasso_path.instances import Shape

# lasso_path with one small search shape and one timing round: the full suite is scored in
# tests/problems/test_lasso_path.py; here the campaign around it is what is tested
PROBLEM = dataclasses.replace(get_problem("lasso_path"), evaluator=LassoEvaluator(
    (Shape("small_wide", "gaussian", 60, 200, k=5),), (Shape("small_hold", "gaussian", 200, 40, k=5),),
    Settings(min_rounds=1, max_rounds=1, celer=False)))
"""


@pytest.mark.slow
def test_offline_campaign_on_lasso_path_and_holdout_of_routing(tmp_path):
    from flows.api import evaluate_campaign

    module = tmp_path / "lasso_small.py"
    module.write_text(LASSO_SMALL)
    summary = run_campaign(str(module), chains=1, k=1, budget=1, seed=1)
    assert summary.campaign.status == "completed" and summary.steps == 1
    assert summary.seed_score is not None and summary.seed_score > 0, "the seed is valid and has a speedup"
    _, ev = repo.candidates_of(get_engine(), summary.campaign.id)[0]
    assert ev.metrics["worst_shape"] and ev.cpu_s > 0

    routing = run_campaign("qubit_routing", chains=1, k=1, budget=1, seed=1)
    rows = evaluate_campaign(routing.campaign.id, holdout=True, top=1)
    assert rows and rows[0].evaluation.status == "ok" and rows[0].evaluation.score != rows[0].search_score
