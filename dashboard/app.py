"""The Streamlit app behind `discovery dashboard`: campaigns, trajectories, programs, comparisons, exports.

Run it with `discovery dashboard` (or `streamlit run dashboard/app.py` with DISCOVERY_DB_URL
set). It opens the database read-only; the Export page is the one writer, through the same
flows.export code as `discovery export`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` from a checkout
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import state  # noqa: E402

st.set_page_config(page_title="discovery dashboard", page_icon=":material/science:", layout="wide")

url = state.db_url()
status, detail = state.status(url)
if status in ("ok", "outdated"):
    pages = {
        "Browse": [
            st.Page(state.PAGES["campaigns"], title="Campaigns", icon=":material/table_rows:", url_path="",
                    default=True),
            st.Page(state.PAGES["campaign"], title="Campaign", icon=":material/monitoring:", url_path="campaign"),
            st.Page(state.PAGES["trajectory"], title="Trajectory", icon=":material/account_tree:",
                    url_path="trajectory"),
            st.Page(state.PAGES["candidate"], title="Candidate", icon=":material/code:", url_path="candidate"),
        ],
        "Results": [
            st.Page(state.PAGES["compare"], title="Compare", icon=":material/compare_arrows:", url_path="compare"),
            st.Page(state.PAGES["export"], title="Export", icon=":material/download:", url_path="export"),
        ],
    }
    if status == "outdated":
        st.warning("This database was written by an older version: restart with `discovery dashboard`, "
                   "which upgrades its schema before browsing.")
else:
    pages = {"": [st.Page(state.PAGES["welcome"], title="Welcome", icon=":material/waving_hand:", url_path="",
                          default=True)]}

with st.sidebar:
    st.caption(f"Database: `{state.shown_url(url)}` (read-only)")

st.navigation(pages).run()
