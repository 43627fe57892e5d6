"""Compare: stored `discovery compare` results, as the ranked table and best-so-far bands."""

import streamlit as st

from dashboard import charts, state

url = state.db_url()
st.title("Compare")
table = state.comparison_table(url)
if table.empty:
    st.info("No comparisons stored yet. Run one, for example:")
    st.code("discovery compare erdos_min_overlap --strategies simpletes,exit,r3l,best_of_n --seeds 3 --budget 64",
            language="bash")
    st.stop()

ids = [int(i) for i in table["id"]]
labels = {int(r["id"]): f"#{r['id']} {r['name']} ({r['status']})" for _, r in table.iterrows()}
wanted = state.param_int("comparison")
if wanted is not None and wanted not in ids:
    st.warning(f"No comparison with id {wanted}; showing the newest.")
chosen = st.selectbox("Comparison", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=labels.get)
state.set_params(comparison=chosen)
detail = state.comparison_detail(url, chosen)
if detail is None:
    st.error(f"Comparison {chosen} is no longer in the database.")
    st.stop()

st.caption(f"problem **{detail['problem']}** · budget **{detail['budget']}** proposer calls per run · "
           f"seeds {', '.join(map(str, detail['seeds']))} · target: beat the seed by {detail['target_pct']:g}% · "
           f"status **{detail['status']}**")
if detail["status"] == "failed" and detail["error"]:
    st.error(detail["error"])
results = detail["results"] or {}
if not results.get("rows"):
    st.info("This comparison has no results yet (it is running, or it failed before any run finished).")
else:
    st.altair_chart(charts.comparison_chart(results), width="stretch")
    st.dataframe(charts.comparison_table(results), hide_index=True, width="stretch")
    st.caption("Lines: the median over seeds of the best score so far; bands: min to max over seeds. "
               "Dashed: the seed's score and the target.")

st.markdown("**Runs**")
runs = detail["runs"]
for run in runs:
    run["link"] = f"campaign?campaign={run['campaign_id']}" if run["campaign_id"] is not None else None
st.dataframe(
    runs, hide_index=True, width="stretch",
    column_order=["link", "strategy", "seed", "campaign_id", "status", "wall_s", "error"],
    column_config={
        "link": st.column_config.LinkColumn("open", display_text="open"),
        "campaign_id": st.column_config.NumberColumn("campaign", format="%d"),
        "wall_s": st.column_config.NumberColumn("wall (s)", format="%.1f"),
    },
)
with st.expander("Settings shared by every run"):
    st.json(detail["config"] or {}, expanded=False)
