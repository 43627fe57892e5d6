"""RELIABILITY.md stays true to the suite: every attack, fault test and bad-input case it
covers is listed, every test it names exists, and it claims no hole that is not marked in the
tests (and hides none that is)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.reliability.attacks import ALL, CATALOGUE
from tests.reliability.report import redteam_rows

HERE = Path(__file__).resolve().parent
DOC = (HERE.parents[1] / "RELIABILITY.md").read_text(encoding="utf-8")


def _tests_in(module: str) -> set[str]:
    tree = ast.parse((HERE / module).read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def _first_cells() -> set[str]:
    return {line.split("|")[1].strip() for line in DOC.splitlines() if line.startswith("| ")}


def test_every_attack_meets_every_problem_and_every_backend():
    from tests.reliability.test_redteam import BACKEND_NAMES, CASES

    assert len(CATALOGUE) >= 25
    assert {c.category for c in CATALOGUE} == {"escape", "exhaustion", "reward"}
    assert set(BACKEND_NAMES) == {"process", "bwrap", "docker"}
    cases = [tuple(c.values) for c in CASES]
    assert len(set((a.name, p, b) for a, p, b in cases)) == len(cases), "a case runs twice"
    for problem in ALL:
        attacks = {a.name for a, p, _ in cases if p == problem}
        assert len(attacks) >= 25, (problem, len(attacks))
        for backend in BACKEND_NAMES:
            assert sum(p == problem and b == backend for _, p, b in cases) >= 12, (problem, backend)
    for attack in CATALOGUE:
        assert {b for a, _, b in cases if a is attack} == set(BACKEND_NAMES), attack.name
        if attack.category != "reward":  # the problem-independent ones meet every problem
            assert {p for a, p, _ in cases if a is attack} == set(ALL), attack.name


def test_every_attack_has_its_row():
    rows = _first_cells()
    missing = [a.name for a in CATALOGUE if a.name not in rows]
    assert missing == [], f"attacks without a row in RELIABILITY.md: {missing}"


def test_every_named_test_exists_and_every_fault_test_is_named():
    named = set(re.findall(r"tests/reliability/(test_\w+)\.py::(test_\w+)", DOC))
    assert named, "RELIABILITY.md names no test"
    for module, test in named:
        assert test in _tests_in(f"{module}.py"), f"RELIABILITY.md names {module}.py::{test}, which does not exist"
    for module in ("test_faults", "test_secrets", "test_redteam"):
        for test in _tests_in(f"{module}.py"):
            assert (module, test) in named, f"{module}.py::{test} is not in RELIABILITY.md"


def test_every_bad_input_case_has_its_row():
    from tests.reliability.test_bad_input import CASES

    rows = _first_cells()
    missing = [c.name for c in CASES if c.name not in rows]
    assert missing == [], f"bad-input cases without a row in RELIABILITY.md: {missing}"


def test_holes_in_the_document_are_the_ones_marked_in_the_tests():
    from tests.reliability.test_redteam import HOLES

    claimed = "HOLE (xfail strict)" in DOC or "defect, xfail strict" in DOC
    assert claimed == bool(HOLES), "RELIABILITY.md and test_redteam.HOLES disagree about open holes"


def test_the_report_renders_a_row_per_attack_with_each_backends_outcome():
    outcomes = [{"attack": "claimed_score", "backend": b, "problem": p, "statuses": ["invalid"]}
                for b in ("process", "bwrap", "docker") for p in ALL]
    outcomes.append({"attack": "net_loopback", "backend": "bwrap", "problem": "erdos_min_overlap", "statuses": ["ok"]})
    rows = redteam_rows(outcomes, CATALOGUE, {("net_loopback", "bwrap", "erdos_min_overlap"): "HOLE: test"})
    assert len(rows) == 2 + len(CATALOGUE)
    claimed = next(r for r in rows if r.startswith("| claimed_score |"))
    assert "process: autocorrelation_first=invalid, circle_packing=invalid" in claimed
    assert claimed.count("=invalid") == 3 * len(ALL)
    loop = next(r for r in rows if r.startswith("| net_loopback |"))
    assert "process: not run<br>bwrap: ok **HOLE (xfail strict)**<br>docker: not run" in loop
