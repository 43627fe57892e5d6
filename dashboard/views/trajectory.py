"""Trajectory: the tree (or chain) of one trajectory's steps, coloured by score; click a node
to open its program."""

import pandas as pd
import streamlit as st

from dashboard import charts, state

url = state.db_url()
table = state.campaign_table(url)
st.title("Trajectory")
campaign_id = state.pick_campaign(table)
if campaign_id is None:
    st.info("No campaigns yet.")
    st.stop()
info = state.campaign_info(url, campaign_id)
if info is None:
    st.error(f"Campaign {campaign_id} is no longer in the database.")
    st.stop()
key = state.version(info)
trajectories = state.trajectory_table(url, campaign_id, key)
if trajectories.empty:
    st.info("This campaign has no trajectories yet.")
    st.stop()

indexes = [int(i) for i in trajectories["index"]]
wanted = state.param_int("trajectory")
if wanted is not None and wanted not in indexes:
    st.warning(f"Campaign {campaign_id} has no trajectory {wanted}; showing trajectory {indexes[0]}.")
by_index = trajectories.set_index("index")


def describe(i: int) -> str:
    row = by_index.loc[i]
    return f"{i} ({row['kind']}, {row['steps']} steps, best {state.fmt_score(row['best_score'])})"


chosen = st.selectbox("Trajectory", indexes, index=indexes.index(wanted) if wanted in indexes else 0,
                      format_func=describe, key=f"trajectory_{campaign_id}")
state.set_params(campaign=campaign_id, trajectory=chosen)
row = by_index.loc[chosen]
st.caption(f"campaign **#{campaign_id} {info['name']}** · {info['problem']} ({info['direction']}) · "
           f"{info['strategy']} · kind **{row['kind']}**"
           + ("" if pd.isna(row["parent_trajectory_id"])
              else f" · branched from trajectory id {int(row['parent_trajectory_id'])}"))

nodes = state.trajectory_nodes(url, int(row["trajectory_id"]), key)
placed, edges, omitted = charts.tree_layout(nodes)
if omitted:
    st.caption(f"The {omitted} earliest steps are not drawn; the latest {len(placed)} are.")
event = st.altair_chart(charts.tree_chart(placed, edges, info["direction"]), width="stretch", on_select="rerun",
                        selection_mode="node", key=f"tree_{campaign_id}_{chosen}")
selected = (event.selection.get("node") or []) if event is not None else []
picked = [p.get("candidate_id") for p in selected if p.get("candidate_id") is not None]
if picked:
    state.go("candidate", candidate=int(picked[0]))
st.caption("x: move number; each node is one proposal, coloured by its score (grey: no valid score). "
           "Click a node to open its program.")

st.markdown("**Steps**")
steps = nodes.copy()
row = state.selected_row(
    steps, key=f"steps_{campaign_id}_{chosen}",
    column_config={
        "index": st.column_config.NumberColumn("move", format="%d"),
        "candidate_id": st.column_config.NumberColumn("candidate", format="%d"),
        "parent_candidate_id": st.column_config.NumberColumn("parent", format="%d"),
        "score": st.column_config.NumberColumn("score", format="%.6f"),
    },
)
if row is not None:
    cid = row["candidate_id"]
    if not pd.isna(cid):
        state.go("candidate", candidate=int(cid))
    else:
        st.info("That step produced no program (see its status); nothing to open.")
