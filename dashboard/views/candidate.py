"""Candidate: the program, its diff against its parent, its evaluation, and the exact prompt and
raw response of the proposer call that produced it."""

import difflib
import json

import streamlit as st

from dashboard import state

url = state.db_url()
st.title("Candidate")
wanted = state.param_int("candidate")
candidate_id = st.number_input("Candidate id", min_value=1, step=1, value=wanted or None,
                               placeholder="a candidate id, or open one from a campaign or trajectory")
if candidate_id is None:
    st.info("Open a candidate from a campaign's best programs or a trajectory's tree, or type its id.")
    st.stop()
candidate_id = int(candidate_id)
state.set_params(candidate=candidate_id)
detail = state.candidate_detail(url, candidate_id)
if detail is None:
    st.error(f"No candidate with id {candidate_id}.")
    st.stop()

cand, evaluation, step, parent, campaign = (detail["candidate"], detail["evaluation"], detail["step"],
                                            detail["parent"], detail["campaign"])
where = f"seed program of campaign #{cand['campaign_id']}" if cand["role"] == "seed" else (
    f"trajectory {step['trajectory']}, move {step['index']}, sample {step['sample']} ({step['mode']})"
    if step else f"campaign #{cand['campaign_id']}")
st.subheader(f"Candidate #{candidate_id}: {where}")
if campaign:
    st.caption(f"campaign **#{campaign['id']} {campaign['name']}** · {campaign['problem']} "
               f"({campaign['direction']}) · {campaign['strategy']} · hash `{cand['program_hash'][:16]}`")

with st.container(horizontal=True):
    state.link("campaign", f"Campaign #{cand['campaign_id']}", campaign=cand["campaign_id"])
    if step:
        state.link("trajectory", f"Trajectory {step['trajectory']}", campaign=cand["campaign_id"],
                   trajectory=step["trajectory"])
    if parent:
        state.link("candidate", f"Parent #{parent['id']}", candidate=parent["id"])
    for child in detail["children"][:8]:
        state.link("candidate", f"Child #{child}", candidate=child)
    if len(detail["children"]) > 8:
        st.caption(f"and {len(detail['children']) - 8} more children")

with st.container(horizontal=True):
    st.metric("Status", evaluation["status"] if evaluation else "not evaluated")
    st.metric("Score", state.fmt_score(evaluation["score"]) if evaluation else "-")
    if parent and evaluation and evaluation["score"] is not None and parent.get("score") is not None:
        st.metric("Parent score", state.fmt_score(parent["score"]),
                  delta=f"{evaluation['score'] - parent['score']:+.6g}",
                  delta_color="normal" if campaign and campaign["direction"] == "maximize" else "inverse")
    if evaluation:
        st.metric("Duration", f"{evaluation['duration_s']:.2f} s", help=f"CPU {evaluation['cpu_s']:.2f} s")
        st.metric("Sandbox", evaluation["backend"] or "-")

program, diff_tab, evaluation_tab, prompt_tab = st.tabs(["Program", "Diff against parent", "Evaluation",
                                                         "Prompt and response"])
with program:
    st.code(cand["code"], language="python", line_numbers=True)
with diff_tab:
    if parent is None:
        st.info("This program has no parent (it is a seed program).")
    else:
        diff = "".join(difflib.unified_diff(
            parent["code"].splitlines(keepends=True), cand["code"].splitlines(keepends=True),
            fromfile=f"candidate {parent['id']} (parent)", tofile=f"candidate {candidate_id}"))
        if diff:
            st.code(diff, language="diff")
        else:
            st.info("Identical to its parent.")
with evaluation_tab:
    if evaluation is None:
        st.info("Not evaluated (yet): the campaign may still be running, or was stopped before it.")
    else:
        if evaluation.get("shared_with"):
            st.caption(f"An identical program (candidate #{evaluation['shared_with']}) was evaluated first; "
                       f"this evaluation is shared, not repeated.")
        st.markdown(f"**{evaluation['status']}** · score {state.fmt_score(evaluation['score'])} · "
                    f"evaluator version {evaluation['evaluator_version']} · {evaluation['kind']}")
        st.markdown("**Feedback** (what the proposer reads next)")
        st.code(evaluation["feedback"] or "(none)", language="text", wrap_lines=True)
        st.markdown("**Metrics**")
        st.json(evaluation["metrics"] or {}, expanded=True)
        out, err = st.columns(2)
        with out:
            st.markdown("**stdout** (tail)")
            st.code(evaluation["stdout"] or "(empty)", language="text")
        with err:
            st.markdown("**stderr** (tail)")
            st.code(evaluation["stderr"] or "(empty)", language="text")
    for holdout in detail["holdout"]:
        st.markdown(f"**{holdout['kind']} evaluation**: {holdout['status']}, score {state.fmt_score(holdout['score'])}")
        st.json(holdout["metrics"] or {}, expanded=False)
with prompt_tab:
    if step is None:
        st.info("The seed program was not proposed by a model: there is no prompt.")
    else:
        st.caption(f"model **{step['model']}** · {step['prompt_tokens']:,} prompt + {step['completion_tokens']:,} "
                   f"completion tokens · ${step['cost_usd']:.5f} · {step['latency_s']:.2f} s · "
                   f"{step['attempts']} attempt(s) · status **{step['status']}**")
        if step["error"]:
            st.error(step["error"])
        for i, message in enumerate(step["messages"] or []):
            role = message.get("role", "user") if isinstance(message, dict) else "user"
            content = message.get("content", "") if isinstance(message, dict) else str(message)
            with st.chat_message("assistant" if role == "assistant" else "user",
                                 avatar=":material/settings:" if role == "system" else None):
                st.caption(f"message {i}: {role}")
                st.code(content if isinstance(content, str) else json.dumps(content, indent=1), language="markdown",
                        wrap_lines=True)
        with st.chat_message("assistant"):
            st.caption("raw response")
            st.code(step["response"] or "(empty)", language="markdown", wrap_lines=True)
        with st.expander("Strategy bookkeeping"):
            st.json(step["bookkeeping"] or {}, expanded=True)
