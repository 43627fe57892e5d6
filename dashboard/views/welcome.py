"""Shown instead of the other pages while there is nothing to browse."""

import streamlit as st

from dashboard import state

url = state.db_url()
status, detail = state.status(url)

st.title("discovery dashboard")
if status == "missing":
    st.info(f"There is no database at `{detail}` yet, so there is nothing to browse.")
elif status == "error":
    st.error(f"The database cannot be read: {detail}")
elif status == "empty":
    st.info(f"The database `{state.shown_url(url)}` has no tables yet: no campaign has run against it.")
else:
    st.info(f"The database `{state.shown_url(url)}` holds no campaigns yet.")

st.subheader("Run a first campaign")
st.markdown(
    "In the project folder, run a campaign on the embedded defaults (offline proposer, local "
    "sandbox, this database). It takes about a minute, and this page turns into the campaign "
    "list as soon as it starts; reload to see it."
)
st.code("discovery run erdos_min_overlap --chains 4 --k 4 --budget 64 --seed 0", language="bash")
st.markdown("Or compare strategies on the same budget:")
st.code("discovery compare erdos_min_overlap --strategies simpletes,exit,r3l --seeds 2 --budget 48",
        language="bash")
st.markdown(
    f"To browse another database, start the dashboard with `discovery dashboard --db URL` or set "
    f"`DISCOVERY_DB_URL` (now: `{state.shown_url(url)}`)."
)
