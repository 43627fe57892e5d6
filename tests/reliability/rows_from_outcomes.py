import json, sys, collections
sys.path.insert(0, '/work/main')
from tests.reliability.attacks import CATALOGUE
from tests.reliability import test_redteam as T
src = sys.argv[1]
out = json.load(open(src))
by = collections.defaultdict(list)
for r in out:
    by[(r["attack"], r["backend"])].append(r)
lines = ["| attack | category | what it tries | test (pytest node id pattern) | outcome on process / bwrap / docker |",
         "|---|---|---|---|---|"]
for a in CATALOGUE:
    cells = []
    for b in ("process", "bwrap", "docker"):
        rs = by.get((a.name, b), [])
        if not rs:
            cells.append(f"{b}: not run"); continue
        parts = []
        for r in rs:
            st = "/".join(r["statuses"]) or "?"
            hole = T.HOLES.get((a.name, b, r["problem"]))
            tag = ""
            if hole:
                tag = " **HOLE (xfail strict)**" if hole.startswith("HOLE") else " (defect, xfail strict)"
            elif "ok" in r["statuses"] and a.honest:
                tag = " (honest score)"
            parts.append(f"{r['problem']}={st}{tag}" if len(a.problems) > 1 else f"{st}{tag}")
        cells.append(f"{b}: " + ", ".join(parts))
    desc = a.description.replace("|", "/")
    lines.append(f"| {a.name} | {a.category} | {desc} | `tests/reliability/test_redteam.py::test_attack[*-{a.name}-*]` | {'<br>'.join(cells)} |")
lines.append("| (campaign) | all | fs_write_outside, proc_environ, cpu_burn, memory_bomb, fork_bomb, orphans_and_zombies, claimed_score, nan_answer, forged_result_file, erdos_within_tolerance, segfault proposed by a stub LLM through `flows.api.run_campaign` | `tests/reliability/test_redteam.py::test_attacks_through_a_campaign[*]` | process / bwrap / docker: campaign completed its budget, each row stored with the expected status (process: fs_write_outside stored invalid, the /run/lock hole) |")
open('/tmp/redteam_rows.md', 'w').write("\n".join(lines) + "\n")
print(len(CATALOGUE), "attacks;", sum(len(a.problems) for a in CATALOGUE) * 3, "attack cases + 3 campaign cases")
