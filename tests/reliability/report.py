"""Turns what the reliability tests saw into the tables of RELIABILITY.md.

The red-team and bad-input tests record each case's outcome; with these variables set they
write them out when their module ends:

    REDTEAM_OUTCOMES=/tmp/redteam.json INPUT_ROWS_MD=/tmp/input.md \\
        .venv/bin/pytest -q tests/reliability/test_redteam.py tests/reliability/test_bad_input.py
    .venv/bin/python -m tests.reliability.report /tmp/redteam.json > /tmp/redteam.md

The red-team table (one row per attack, the statuses seen on each backend and problem) is
printed on stdout; /tmp/input.md is the bad-input table as it is. The fault rows are written
from the figures test_faults.py prints (`pytest -s`), since they are measurements, not statuses.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

BACKEND_ORDER = ("process", "bwrap", "docker")


def redteam_rows(outcomes: list[dict], catalogue, holes: dict) -> list[str]:
    """Markdown rows (header included), one per attack of `catalogue`, from the recorded
    outcomes: {"attack", "backend", "problem", "statuses"} per case."""
    by = collections.defaultdict(list)
    for r in outcomes:
        by[(r["attack"], r["backend"])].append(r)
    lines = ["| attack | category | what it tries | test (pytest node id pattern) | outcome on process / bwrap / docker |",
             "|---|---|---|---|---|"]
    for a in catalogue:
        named = len({r["problem"] for (name, _), rs in by.items() if name == a.name for r in rs}) > 1
        cells = []
        for b in BACKEND_ORDER:
            rs = by.get((a.name, b), [])
            if not rs:
                cells.append(f"{b}: not run")
                continue
            parts = []
            for r in rs:
                st = "/".join(r["statuses"]) or "?"
                hole = holes.get((a.name, b, r["problem"]))
                tag = ""
                if hole:
                    tag = " **HOLE (xfail strict)**" if hole.startswith("HOLE") else " (defect, xfail strict)"
                elif "ok" in r["statuses"] and a.honest:
                    tag = " (honest score)"
                parts.append(f"{r['problem']}={st}{tag}" if named else f"{st}{tag}")
            cells.append(f"{b}: " + ", ".join(parts))
        desc = a.description.replace("|", "/")
        lines.append(f"| {a.name} | {a.category} | {desc} | "
                     f"`tests/reliability/test_redteam.py::test_attack[{a.name}-*]` | {'<br>'.join(cells)} |")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.reliability.report REDTEAM_OUTCOMES.json", file=sys.stderr)
        return 2
    from tests.reliability.attacks import CATALOGUE
    from tests.reliability.test_redteam import HOLES

    outcomes = json.loads(Path(argv[0]).read_text())
    print("\n".join(redteam_rows(outcomes, CATALOGUE, HOLES)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
