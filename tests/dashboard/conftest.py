"""One real database for the dashboard tests: campaigns run by the real flows (offline proposer),
a stored comparison and an export, built once per test session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@dataclasses.dataclass(frozen=True)
class BrowseDB:
    url: str
    path: Path
    simpletes: int  # campaign ids
    r3l: int
    comparison: int
    export: int
    export_dir: Path


@pytest.fixture(scope="session")
def browse_db(tmp_path_factory, prefect_harness) -> BrowseDB:
    from db.engine import dispose_engines
    from flows.api import run_campaign
    from flows.compare import compare_strategies
    from flows.export import export_dataset

    folder = tmp_path_factory.mktemp("browse")
    path = folder / "browse.db"
    url = f"sqlite:///{path}"
    simpletes = run_campaign("erdos_min_overlap", chains=2, k=4, budget=32, seed=1, db_url=url).campaign.id
    r3l = run_campaign("erdos_min_overlap", strategy="r3l", budget=24, seed=2, db_url=url).campaign.id
    comparison = compare_strategies("erdos_min_overlap", strategies="simpletes,best_of_n", seeds=2, budget=8, chains=2, k=2,
                                    parallel=1, plot_path=folder / "cmp.png", db_url=url).id
    export = export_dataset([simpletes], out_dir=folder / "export", db_url=url).id
    dispose_engines()
    return BrowseDB(url=url, path=path, simpletes=simpletes, r3l=r3l, comparison=comparison, export=export,
                    export_dir=folder / "export")
