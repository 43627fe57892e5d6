"""Problem registry: find a Problem by name (entry points) or by path (a file or package folder).

Built-in and installed problems register under the entry-point group "discovery.problems", e.g.
in a package's pyproject.toml:

    [project.entry-points."discovery.problems"]
    my_problem = "my_package.my_problem:PROBLEM"

Entry points are read lazily: listing names reads only package metadata, and a problem module
is imported when that problem is asked for. Built-in problems are found the same way, and also
through `BUILTINS` so a source checkout works before (re)installation.

A path to a `.py` file or to a package folder (with `__init__.py`) that defines a module-level
`PROBLEM` is loaded directly: `get_problem("./my_problem.py")`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from problems.base import Problem

ENTRY_POINT_GROUP = "discovery.problems"

# name -> "module:attribute" of the problems that ship with the platform.
BUILTINS: dict[str, str] = {
    "autocorrelation_first": "problems.autocorrelation_first:PROBLEM",
    "circle_packing": "problems.circle_packing:PROBLEM",
    "erdos_min_overlap": "problems.erdos_min_overlap:PROBLEM",
    "lasso_path": "problems.lasso_path:PROBLEM",
    "qubit_routing": "problems.qubit_routing:PROBLEM",
}

_HOW_TO_ADD = (
    "pass a path to a .py file or package folder defining PROBLEM, or register one under the "
    f'entry-point group "{ENTRY_POINT_GROUP}" in a package\'s pyproject.toml'
)


class ProblemError(Exception):
    """A problem cannot be found or loaded; the message is one line that names the fix."""


def _registered() -> dict[str, str]:
    """name -> "module:attribute" for built-ins and installed entry points (nothing imported).

    Under pytest (tests/conftest.py sets sys._called_from_test) only built-in targets are used,
    so problems installed on the developer's machine do not change test results.
    """
    targets = dict(BUILTINS)
    only_builtins = getattr(sys, "_called_from_test", False)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTINS:
            continue  # a built-in name always means the built-in problem
        if only_builtins and not ep.value.startswith("problems."):
            continue
        targets.setdefault(ep.name, ep.value)
    return targets


def problem_names() -> list[str]:
    """Names of every registered problem, sorted (no problem module is imported)."""
    return sorted(_registered())


def list_problems() -> list[Problem]:
    """Every registered problem, loaded and sorted by name; ProblemError if one fails to load."""
    return [get_problem(name) for name in problem_names()]


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or "\\" in text or text.startswith((".", "~"))


def get_problem(name_or_path: str) -> Problem:
    """Returns the problem registered under a name, or defined in a .py file or package folder."""
    text = str(name_or_path).strip()
    if not text:
        raise ProblemError(f"no problem given; known problems: {', '.join(problem_names())}")
    if _looks_like_path(text):
        return _load_path(Path(text).expanduser())
    targets = _registered()
    if text not in targets:
        known = ", ".join(sorted(targets)) or "none"
        local = f" (for the file or folder here, write ./{text})" if Path(text).exists() else ""
        raise ProblemError(
            f"unknown problem {text!r}; known: {known}; to add one, {_HOW_TO_ADD}{local}"
        )
    return _load_target(text, targets[text])


def _load_target(name: str, target: str) -> Problem:
    module_name, _, attribute = target.partition(":")
    attribute = attribute or "PROBLEM"
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise ProblemError(_syntax_message(exc, f"problem {name!r}")) from exc
    except Exception as exc:
        raise ProblemError(
            f"problem {name!r}: module {module_name} failed to import: {_exception_line(exc)}; "
            f"fix the module or reinstall the package that provides it"
        ) from exc
    obj = getattr(module, attribute, None)
    problem = _check_problem(obj, f"problem {name!r} ({target})", attribute)
    if problem.name != name:
        raise ProblemError(
            f"problem {name!r}: {target} is named {problem.name!r}; make the entry-point name and "
            f"Problem.name equal"
        )
    return problem


def _load_path(path: Path) -> Problem:
    if not path.exists():
        raise ProblemError(
            f"problem file not found: {path}; pass an existing .py file or a package folder with "
            f"__init__.py that defines PROBLEM"
        )
    path = path.resolve()
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise ProblemError(
                f"{path} is a folder without __init__.py; make it a package whose __init__.py "
                f"defines PROBLEM, or pass the .py file that does"
            )
        module = _exec_module(init, path, package=True)
    elif path.suffix == ".py":
        module = _exec_module(path, path, package=False)
    else:
        raise ProblemError(
            f"{path} is not a .py file or a package folder; pass one that defines PROBLEM"
        )
    return _check_problem(getattr(module, "PROBLEM", None), str(path), "PROBLEM")


def _exec_module(file: Path, origin: Path, package: bool) -> ModuleType:
    """Imports a file under a private module name (fresh each time, so edits are picked up)."""
    digest = hashlib.sha256(str(origin).encode()).hexdigest()[:12]
    module_name = f"_discovery_problem_{origin.stem.replace('-', '_').replace('.', '_')}_{digest}"
    spec = importlib.util.spec_from_file_location(
        module_name, file, submodule_search_locations=[str(origin)] if package else None
    )
    if spec is None or spec.loader is None:
        raise ProblemError(
            f"{file}: cannot be imported as a Python module; pass a .py file or package folder"
        )
    module = importlib.util.module_from_spec(spec)
    for key in [k for k in sys.modules if k == module_name or k.startswith(module_name + ".")]:
        del sys.modules[key]
    sys.modules[module_name] = module  # needed by dataclasses and relative imports
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ProblemError(_syntax_message(exc, str(file))) from exc
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ProblemError(
            f"{file} failed to import: {_exception_line(exc)}{_where(exc, origin)}; fix the module"
        ) from exc
    return module


def _check_problem(obj: object, where: str, attribute: str) -> Problem:
    if obj is None:
        raise ProblemError(
            f"{where} defines no {attribute}; add a module-level {attribute} = Problem(...) "
            f"(from problems.base import Problem)"
        )
    if not isinstance(obj, Problem):
        raise ProblemError(
            f"{where}: {attribute} is a {type(obj).__name__}, not a problems.base.Problem; "
            f"build it with Problem(...)"
        )
    _check_entrypoint(obj, where)
    return obj


def _check_entrypoint(problem: Problem, where: str) -> None:
    """The seed program must parse and define the entrypoint the sandbox will call."""
    import ast

    try:
        tree = ast.parse(problem.seed_program)
    except SyntaxError as exc:
        raise ProblemError(
            f"{where}: the seed program does not parse (line {exc.lineno}: {exc.msg}); fix seed_program"
        ) from None
    name = problem.entrypoint
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name:
            return
        if isinstance(node, ast.alias) and (node.asname or node.name.split(".")[0]) == name:
            return
    raise ProblemError(
        f"{where}: the seed program does not define the entrypoint {name}(); "
        f"add `def {name}(...)` to seed_program or set entrypoint to the function it defines"
    )


def _syntax_message(exc: SyntaxError, where: str) -> str:
    location = f"{exc.filename}:{exc.lineno}" if exc.filename else f"{where}, line {exc.lineno}"
    return f"{location}: syntax error: {exc.msg}; fix it and retry"


def _exception_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def _where(exc: BaseException, origin: Path) -> str:
    """' (at file:line)' for the innermost frame inside the problem's file or folder."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(origin))
    ]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "ProblemError",
    "get_problem",
    "list_problems",
    "problem_names",
]
