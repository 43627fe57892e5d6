"""Campaign: progress against evaluations, time and cost; statuses; trajectories; best programs.

While the campaign runs, the live part reruns itself every few seconds (st.fragment run_every).
"""

import datetime as dt

import streamlit as st

from dashboard import charts, state
from dashboard.queries import best_known_ratio

url = state.db_url()
table = state.campaign_table(url)
st.title("Campaign")
campaign_id = state.pick_campaign(table)
if campaign_id is None:
    st.info("No campaigns yet.")
    st.stop()

X_AXES = {"evaluations": "evaluations", "time": "elapsed_s", "cost": "cost_usd"}
X_TITLES = {"evaluations": "evaluations", "elapsed_s": "seconds since the first proposal", "cost_usd": "USD spent"}


def header(info: dict) -> None:
    st.subheader(f"#{info['id']} {info['name']}")
    st.caption(f"problem **{info['problem']}** ({info['direction']}) · strategy **{info['strategy']}** · "
               f"model **{info['model']}** · seed {info['seed']} · status **{info['status']}**")
    if info["status"] == "failed" and info.get("error"):
        st.error(f"The campaign failed: {info['error']}")


def metrics(info: dict, frame) -> None:
    known = state.best_known(info["problem"])
    rate = charts.throughput(frame)
    best, seed = info["best_score"], info["seed_score"]
    delta = None if best is None or seed is None else best - seed
    started, finished = info.get("started_at"), info.get("finished_at")
    end = finished or (dt.datetime.now(dt.timezone.utc) if info["status"] == "running" else info["last_step_at"])
    with st.container(horizontal=True):
        st.metric("Best score", state.fmt_score(best),
                  delta=None if delta is None else f"{delta:+.6g} vs seed",
                  delta_color="normal" if info["direction"] == "maximize" else "inverse")
        ratio = best_known_ratio(best, known, info["direction"])
        if ratio is not None:  # (none without a best-known value, or when it is 0)
            st.metric("vs best known", f"{ratio:.4f}", help=f"best known {known:g}: "
                      f"{state.best_known_citation(info['problem'])}")
        st.metric("Budget used", f"{info['steps']} / {info['budget']}")
        st.metric("Evaluations", f"{sum(info['eval_status'].values()):,}")
        per_min = rate.get("recent_per_min") or rate.get("per_min")
        st.metric("Throughput", "-" if not per_min else f"{per_min:.1f}/min")
        st.metric("Tokens", f"{info['prompt_tokens'] + info['completion_tokens']:,}",
                  help=f"{info['prompt_tokens']:,} prompt + {info['completion_tokens']:,} completion")
        st.metric("Cost", f"${info['cost_usd']:.4f}")
        st.metric("Duration", state.fmt_duration((end - started).total_seconds() if started and end else None))


def progress(info: dict, frame) -> None:
    st.markdown("**Best score so far**")
    choice = st.segmented_control("against", list(X_AXES), default="evaluations", key="x_axis",
                                  label_visibility="collapsed") or "evaluations"
    x = X_AXES[choice]
    if frame.empty:
        st.info("No evaluation yet.")
        return
    lines, hidden = charts.progress_lines(frame, x, info["direction"])
    chart = charts.progress_chart(lines, x, best_known=state.best_known(info["problem"]), x_title=X_TITLES[x])
    st.altair_chart(chart, width="stretch", key="progress_chart")
    if hidden:
        st.caption(f"{hidden} more trajectories are not drawn (the best ones are); the best-overall line counts all.")


def live() -> None:
    info = state.campaign_info(url, campaign_id)
    if info is None:
        st.error(f"Campaign {campaign_id} is no longer in the database.")
        return
    frame = charts.progress_frame(state.points(info), info["direction"], info["seed_score"])
    header(info)
    metrics(info, frame)
    left, right = st.columns([3, 1])
    with left:
        progress(info, frame)
    with right:
        st.markdown("**Evaluations by status**")
        if info["eval_status"]:
            st.altair_chart(charts.status_chart(info["eval_status"]), width="stretch")
        failed_calls = {k: v for k, v in info["step_status"].items() if k != "ok"}
        if failed_calls:
            st.caption("Proposals without a program: " + ", ".join(f"{n} {k}" for k, n in failed_calls.items()))
    if info["status"] == "running":
        st.caption(f"Running: this page refreshes every {state.REFRESH_S:g} s.")


running = (state.campaign_info(url, campaign_id) or {}).get("status") == "running"
st.fragment(live, run_every=state.REFRESH_S if running else None)()

info = state.campaign_info(url, campaign_id)
if info is None:
    st.stop()
key = state.version(info)
left, right = st.columns(2)
with left:
    st.markdown("**Trajectories**")
    trajectories = state.trajectory_table(url, campaign_id, key)
    chosen = state.selected_row(
        trajectories.drop(columns=["trajectory_id", "parent_trajectory_id"]), key="trajectories",
        column_config={
            "index": st.column_config.NumberColumn("trajectory", format="%d"),
            "best_score": st.column_config.NumberColumn("best", format="%.6f"),
            "first_at": st.column_config.DatetimeColumn("first step", format="HH:mm:ss"),
            "last_at": st.column_config.DatetimeColumn("last step", format="HH:mm:ss"),
        },
    )
    if chosen is not None:
        state.go("trajectory", campaign=campaign_id, trajectory=int(chosen["index"]))
    st.caption("Select a trajectory to see its tree of steps.")
with right:
    st.markdown("**Best programs**")
    best = state.best_candidates(url, campaign_id, key)
    picked = state.selected_row(
        best, key="best",
        column_config={
            "candidate_id": st.column_config.NumberColumn("candidate", format="%d"),
            "score": st.column_config.NumberColumn("score", format="%.6f"),
            "index": st.column_config.NumberColumn("move", format="%d"),
        },
    )
    if picked is not None:
        state.go("candidate", candidate=int(picked["candidate_id"]))
    st.caption("Select a program to read it beside its parent.")

with st.expander("Configuration"):
    st.json(info["config"], expanded=False)
