"""Campaigns: every campaign in the database, filterable; pick one to open it."""

import streamlit as st

from dashboard import state

st.title("Campaigns")
table = state.campaign_table(state.db_url())

with st.container(horizontal=True):
    problems = st.multiselect("Problem", sorted(table["problem"].unique()), placeholder="all")
    strategies = st.multiselect("Strategy", sorted(table["strategy"].unique()), placeholder="all")
    statuses = st.multiselect("Status", sorted(table["status"].unique()), placeholder="all")
    models = st.multiselect("Model", sorted(table["model"].unique()), placeholder="all")
    search = st.text_input("Name contains", placeholder="text in the name")

shown = table
for column, chosen in (("problem", problems), ("strategy", strategies), ("status", statuses), ("model", models)):
    if chosen:
        shown = shown[shown[column].isin(chosen)]
if search:
    shown = shown[shown["name"].str.contains(search, case=False, regex=False)]

with st.container(horizontal=True):
    st.metric("Campaigns", f"{len(shown)} of {len(table)}")
    st.metric("Running", int((shown["status"] == "running").sum()))
    st.metric("Evaluations", f"{int(shown['evaluations'].sum()):,}")
    st.metric("LLM spend", f"${shown['cost_usd'].sum():,.4f}")

view = shown.assign(
    used=(shown["steps"] / shown["budget"].where(shown["budget"] > 0)).clip(upper=1.0).fillna(0.0),
    link=[f"campaign?campaign={i}" for i in shown["id"]],
)
columns = ["link", "id", "name", "problem", "strategy", "model", "status", "used", "steps", "budget", "best_score",
           "best_known_ratio", "cost_usd", "started_at", "duration_s"]
picked = state.selected_row(
    view[columns],
    key="campaign_table",
    column_config={
        "link": st.column_config.LinkColumn("open", display_text="open", width="small"),
        "id": st.column_config.NumberColumn("id", format="%d", width="small"),
        "used": st.column_config.ProgressColumn("budget used", min_value=0.0, max_value=1.0, format="percent"),
        "steps": st.column_config.NumberColumn("proposals", format="%d"),
        "budget": st.column_config.NumberColumn("budget", format="%d"),
        "best_score": st.column_config.NumberColumn("best score", format="%.6f"),
        "best_known_ratio": st.column_config.NumberColumn(
            "vs best known", format="%.4f",
            help="best / best known when maximising, best known / best when minimising: 1.0 matches it, "
                 "above 1.0 beats it"),
        "cost_usd": st.column_config.NumberColumn("USD", format="$%.4f"),
        "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
        "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
    },
)
if picked is not None:
    state.go("campaign", campaign=int(picked["id"]))
st.caption("Select a row (or follow its link) to open the campaign.")
