"""Problem registry: by name (entry points and the built-in fallback), by file, by folder."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import pytest

import problems
from problems import ProblemError, get_problem, list_problems, problem_names
from problems.base import Problem

PROBLEM_SOURCE = '''
from discovery.types import Evaluation
from problems.base import Problem

def score(output):
    return Evaluation(status="ok", score=float(output))

PROBLEM = Problem(
    name="{name}",
    title="t",
    description="d",
    seed_program="# EVOLVE-BLOCK-START\\ndef run():\\n    return 1\\n# EVOLVE-BLOCK-END\\n",
    entrypoint="run",
    direction="maximize",
    score=score,
)
'''


def assert_one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_builtin_by_name():
    problem = get_problem("erdos_min_overlap")
    from problems.erdos_min_overlap import PROBLEM

    assert problem is PROBLEM
    assert isinstance(problem, Problem)
    assert problem.direction == "minimize"
    assert problem.entrypoint == "construct"


def test_list_problems_includes_builtins():
    assert "erdos_min_overlap" in problem_names()
    assert "erdos_min_overlap" in [p.name for p in list_problems()]


def test_builtin_found_without_entry_points(monkeypatch):
    # a source checkout that was never installed: no metadata, the fallback table still works
    monkeypatch.setattr(problems, "entry_points", lambda group: [])
    assert get_problem("erdos_min_overlap").name == "erdos_min_overlap"


def test_installed_entry_point_is_loaded_lazily(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text(PROBLEM_SOURCE.format(name="my_plugin"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "_called_from_test", False)
    ep = EntryPoint("my_plugin", "my_plugin_mod:PROBLEM", problems.ENTRY_POINT_GROUP)
    monkeypatch.setattr(problems, "entry_points", lambda group: [ep])
    assert "my_plugin" in problem_names()
    assert "my_plugin_mod" not in sys.modules  # listing names imports nothing
    assert get_problem("my_plugin").name == "my_plugin"
    sys.modules.pop("my_plugin_mod", None)


def test_third_party_entry_points_ignored_under_tests(monkeypatch):
    ep = EntryPoint("someone_elses", "elsewhere:PROBLEM", problems.ENTRY_POINT_GROUP)
    monkeypatch.setattr(problems, "entry_points", lambda group: [ep])
    assert "someone_elses" not in problem_names()


def test_entry_point_cannot_shadow_a_builtin(monkeypatch):
    monkeypatch.setattr(sys, "_called_from_test", False)
    ep = EntryPoint("erdos_min_overlap", "evil:PROBLEM", problems.ENTRY_POINT_GROUP)
    monkeypatch.setattr(problems, "entry_points", lambda group: [ep])
    assert get_problem("erdos_min_overlap").name == "erdos_min_overlap"


def test_entry_point_name_must_match(tmp_path, monkeypatch):
    (tmp_path / "mismatch_mod.py").write_text(PROBLEM_SOURCE.format(name="other_name"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "_called_from_test", False)
    ep = EntryPoint("mismatch", "mismatch_mod:PROBLEM", problems.ENTRY_POINT_GROUP)
    monkeypatch.setattr(problems, "entry_points", lambda group: [ep])
    with pytest.raises(ProblemError) as exc:
        get_problem("mismatch")
    assert "other_name" in assert_one_line(exc)
    sys.modules.pop("mismatch_mod", None)


def test_entry_point_module_import_error(monkeypatch):
    monkeypatch.setattr(sys, "_called_from_test", False)
    ep = EntryPoint("ghost", "no_such_module_xyz:PROBLEM", problems.ENTRY_POINT_GROUP)
    monkeypatch.setattr(problems, "entry_points", lambda group: [ep])
    with pytest.raises(ProblemError) as exc:
        get_problem("ghost")
    message = assert_one_line(exc)
    assert "no_such_module_xyz" in message and "failed to import" in message


def test_by_py_path(tmp_path):
    path = tmp_path / "my_problem.py"
    path.write_text(PROBLEM_SOURCE.format(name="from_file"))
    problem = get_problem(str(path))
    assert problem.name == "from_file"
    assert problem.score(2).score == 2.0


def test_by_relative_path(tmp_path, monkeypatch):
    (tmp_path / "rel.py").write_text(PROBLEM_SOURCE.format(name="relative"))
    monkeypatch.chdir(tmp_path)
    assert get_problem("./rel.py").name == "relative"
    assert get_problem("rel.py").name == "relative"


def test_file_edits_are_picked_up(tmp_path):
    path = tmp_path / "edit.py"
    path.write_text(PROBLEM_SOURCE.format(name="first"))
    assert get_problem(str(path)).name == "first"
    path.write_text(PROBLEM_SOURCE.format(name="second"))
    assert get_problem(str(path)).name == "second"


def test_by_package_folder_with_relative_import_and_data(tmp_path):
    folder = tmp_path / "my_pkg"
    folder.mkdir()
    (folder / "scorer.py").write_text(
        "from discovery.types import Evaluation\n"
        "def score(output):\n    return Evaluation(status='ok', score=1.0)\n"
    )
    (folder / "seed.py").write_text(
        "# EVOLVE-BLOCK-START\ndef run():\n    return 1\n# EVOLVE-BLOCK-END\n"
    )
    (folder / "__init__.py").write_text(
        "from importlib import resources\n"
        "from problems.base import Problem\n"
        "from .scorer import score\n"
        "PROBLEM = Problem(name='pkg', title='t', description='d',\n"
        "    seed_program=resources.files(__package__).joinpath('seed.py').read_text(),\n"
        "    entrypoint='run', direction='maximize', score=score)\n"
    )
    problem = get_problem(str(folder))
    assert problem.name == "pkg"
    assert "def run()" in problem.seed_program


def test_folder_without_init(tmp_path):
    (tmp_path / "bare").mkdir()
    with pytest.raises(ProblemError) as exc:
        get_problem(str(tmp_path / "bare"))
    assert "__init__.py" in assert_one_line(exc)


def test_unknown_name_lists_known_and_how_to_add():
    with pytest.raises(ProblemError) as exc:
        get_problem("no_such_problem")
    message = assert_one_line(exc)
    assert "unknown problem 'no_such_problem'" in message
    assert "erdos_min_overlap" in message
    assert "discovery.problems" in message and ".py file" in message


def test_unknown_name_that_exists_locally_suggests_dot_slash(tmp_path, monkeypatch):
    (tmp_path / "local_pkg").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProblemError) as exc:
        get_problem("local_pkg")
    assert "./local_pkg" in assert_one_line(exc)


def test_file_not_found(tmp_path):
    with pytest.raises(ProblemError) as exc:
        get_problem(str(tmp_path / "missing.py"))
    message = assert_one_line(exc)
    assert "not found" in message and "missing.py" in message


def test_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("x = 1\n\ndef f(:\n    pass\n")
    with pytest.raises(ProblemError) as exc:
        get_problem(str(path))
    message = assert_one_line(exc)
    assert f"{path}:3" in message and "syntax error" in message


def test_module_raising_on_import(tmp_path):
    path = tmp_path / "raises.py"
    path.write_text("x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(ProblemError) as exc:
        get_problem(str(path))
    message = assert_one_line(exc)
    assert "failed to import" in message and "RuntimeError: boom" in message
    assert f"{path}:2" in message


def test_missing_problem_attribute(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(ProblemError) as exc:
        get_problem(str(path))
    assert "defines no PROBLEM" in assert_one_line(exc)


def test_problem_of_wrong_type(tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text("PROBLEM = {'name': 'x'}\n")
    with pytest.raises(ProblemError) as exc:
        get_problem(str(path))
    message = assert_one_line(exc)
    assert "PROBLEM is a dict" in message and "problems.base.Problem" in message


def test_not_a_python_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ProblemError) as exc:
        get_problem(str(path))
    assert "not a .py file" in assert_one_line(exc)
