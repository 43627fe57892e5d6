"""What every page shares: the read-only engine, cached queries, and links between pages.

Caching, so that a page on a 100,000-step database reruns in milliseconds (bench/dashboard_scale.py):
  - every list (campaigns, comparisons, exports) is cached under a *change marker*: a few
    aggregates of the small tables (queries.change_marker, read every LIVE_TTL_S seconds), so
    it is read again only when a campaign, comparison or export was added or changed status;
  - a campaign's totals are cached under its (status, finished_at), and its heavy frames (every
    step's point, a trajectory's nodes) under its row counts, so a finished campaign is read
    once;
  - while anything runs, the keys also hold a LIVE_TTL_S time bucket, so progress shows.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import queries as q
from db.engine import DatabaseError, get_reader, resolve_url, sqlite_path

PAGES = {
    "campaigns": "views/campaigns.py",
    "campaign": "views/campaign.py",
    "trajectory": "views/trajectory.py",
    "candidate": "views/candidate.py",
    "compare": "views/compare.py",
    "export": "views/export.py",
    "welcome": "views/welcome.py",
}
LIVE_TTL_S = 3.0  # how stale the totals of a running campaign may be
REFRESH_S = 3.0  # how often a page showing a running campaign reruns itself


def db_url() -> str:
    """The database this dashboard browses: DISCOVERY_DB_URL, else ./discovery.db."""
    return resolve_url(os.environ.get("DISCOVERY_DB_URL"))


def shown_url(url: str) -> str:
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@st.cache_resource(show_spinner=False)
def _reader(url: str):
    return get_reader(url)


def engine():
    return _reader(db_url())


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def status(url: str) -> tuple[str, str]:
    """(status, detail): "missing", "error", or what queries.database_status says."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return "missing", str(path)
    try:
        return q.database_status(_reader(url)), ""
    except DatabaseError as exc:
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - a corrupt file or an unreachable server: say so, do not crash
        first = (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0]
        return "error", f"{type(exc).__name__}: {first}"


# ---------------------------------------------------------------- cached queries


@st.cache_data(ttl=3600, show_spinner=False)
def best_known(problem: str) -> float | None:
    """The problem's best-known value (None when it has none or cannot be loaded here)."""
    from problems import get_problem

    try:
        known = get_problem(problem).best_known
    except Exception:  # noqa: BLE001 - a user problem whose file moved: no reference line
        return None
    return None if known is None else float(known.value)


@st.cache_data(ttl=3600, show_spinner=False)
def best_known_citation(problem: str) -> str:
    from problems import get_problem

    try:
        known = get_problem(problem).best_known
    except Exception:  # noqa: BLE001
        return ""
    return "" if known is None else known.citation


def _bucket() -> int:
    return int(time.time() // LIVE_TTL_S)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _marker(url: str) -> tuple:
    return q.change_marker(_reader(url))


def marker(url: str) -> tuple:
    """What the cached lists are keyed on (with a time bucket while anything runs)."""
    mark = _marker(url)
    return (*mark, _bucket()) if mark[-1] else mark


@st.cache_data(max_entries=8, show_spinner=False)
def _campaign_table(url: str, key: tuple) -> pd.DataFrame:
    return q.campaign_table(_reader(url), best_known)


def campaign_table(url: str) -> pd.DataFrame:
    return _campaign_table(url, marker(url))


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _campaign_head(url: str, campaign_id: int):
    return q.campaign_head(_reader(url), campaign_id)


@st.cache_data(max_entries=64, show_spinner=False)
def _campaign_info(url: str, campaign_id: int, key: tuple) -> dict[str, Any] | None:
    return q.campaign_info(_reader(url), campaign_id)


def campaign_info(url: str, campaign_id: int) -> dict[str, Any] | None:
    """One campaign's row and totals (None for an unknown id); re-read only when it changes."""
    head = _campaign_head(url, campaign_id)
    if head is None:
        return None
    status, finished = head
    key = (status, str(finished), _bucket() if status in ("running", "created") else None)
    return _campaign_info(url, campaign_id, key)


def version(info: dict[str, Any]) -> tuple:
    """What changes whenever a campaign's rows change (the key of its heavy queries)."""
    return (info["status"], info["steps"], info["candidates"], sum(info["eval_status"].values()))


@st.cache_data(max_entries=16, show_spinner="Reading the campaign's steps...")
def campaign_points(url: str, campaign_id: int, key: tuple) -> pd.DataFrame:
    return q.campaign_points(_reader(url), campaign_id)


def points(info: dict[str, Any]) -> pd.DataFrame:
    """Every step of the campaign (cached until the campaign has new rows)."""
    return campaign_points(db_url(), info["id"], version(info))


@st.cache_data(max_entries=32, show_spinner=False)
def trajectory_table(url: str, campaign_id: int, key: tuple) -> pd.DataFrame:
    return q.trajectory_table(_reader(url), campaign_id)


@st.cache_data(max_entries=32, show_spinner="Reading the trajectory...")
def trajectory_nodes(url: str, trajectory_id: int, key: tuple) -> pd.DataFrame:
    return q.trajectory_nodes(_reader(url), trajectory_id)


@st.cache_data(max_entries=32, show_spinner=False)
def best_candidates(url: str, campaign_id: int, key: tuple, limit: int = 50) -> pd.DataFrame:
    return q.campaign_candidate_ids(_reader(url), campaign_id, limit)


@st.cache_data(max_entries=256, ttl=LIVE_TTL_S, show_spinner=False)
def candidate_detail(url: str, candidate_id: int) -> dict[str, Any] | None:
    return q.candidate_detail(_reader(url), candidate_id)


@st.cache_data(max_entries=8, show_spinner=False)
def _comparison_table(url: str, key: tuple) -> pd.DataFrame:
    return q.comparison_table(_reader(url))


def comparison_table(url: str) -> pd.DataFrame:
    return _comparison_table(url, marker(url))


@st.cache_data(max_entries=32, show_spinner=False)
def _comparison_detail(url: str, comparison_id: int, key: tuple) -> dict[str, Any] | None:
    return q.comparison_detail(_reader(url), comparison_id)


def comparison_detail(url: str, comparison_id: int) -> dict[str, Any] | None:
    return _comparison_detail(url, comparison_id, marker(url))


@st.cache_data(max_entries=8, show_spinner=False)
def _export_table(url: str, key: tuple) -> pd.DataFrame:
    return q.export_table(_reader(url))


def export_table(url: str) -> pd.DataFrame:
    return _export_table(url, marker(url))


def forget_lists() -> None:
    """After this session wrote something (an export): read the lists again at once."""
    _marker.clear()


# ---------------------------------------------------------------- query parameters and links


def param_int(name: str) -> int | None:
    """An integer query parameter (?campaign=3), None when absent or not a number."""
    value = st.query_params.get(name)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def set_params(**values: Any) -> None:
    """Keeps the address bar in step with what the page shows, so it can be shared or reloaded."""
    for name, value in values.items():
        if value is None:
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)


def go(page: str, **params: Any) -> None:
    st.switch_page(PAGES[page], query_params={k: str(v) for k, v in params.items() if v is not None})


def selected_row(frame: pd.DataFrame, *, key: str, column_config: dict[str, Any]) -> pd.Series | None:
    """Shows `frame` as a table whose rows can be selected one at a time; returns the selected
    row (the page then opens what it points to with `go`), or None."""
    event = st.dataframe(frame, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key=key, column_config=column_config)
    rows = event.selection.rows if event is not None else []
    return frame.iloc[rows[0]] if rows else None


def link(page: str, label: str, **params: Any) -> None:
    st.page_link(PAGES[page], label=label, query_params={k: str(v) for k, v in params.items() if v is not None})


def campaign_label(row: Any) -> str:
    return f"#{row['id']} {row['name']} ({row['status']})"


def pick_campaign(table: pd.DataFrame, key: str = "campaign") -> int | None:
    """A campaign selector defaulting to ?campaign=, else the newest; keeps ?campaign= in step."""
    if table.empty:
        return None
    ids = [int(i) for i in table["id"]]
    labels = {int(r["id"]): campaign_label(r) for _, r in table.iterrows()}
    wanted = param_int("campaign")
    index = ids.index(wanted) if wanted in ids else 0
    if wanted is not None and wanted not in ids:
        st.warning(f"No campaign with id {wanted}; showing the newest instead.")
    chosen = st.selectbox("Campaign", ids, index=index, format_func=labels.get, key=key)
    set_params(campaign=chosen)
    return chosen


def fmt_score(value: Any, digits: int = 6) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1e5 or abs(value) < 1e-3 else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")
