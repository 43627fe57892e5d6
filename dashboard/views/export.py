"""Export: choose campaigns and filters, preview the row counts, write the dataset.

This page is the dashboard's one writer, and it writes through flows.export, the same code
as `discovery export` (the export is stored with the equivalent command line).
"""

import streamlit as st

from dashboard import state
from db.repository import EXPORTABLE_STATUSES
from discovery.export.schema import FORMATS, ExportFilters
from flows.export import ExportError, export_dataset, preview_export

url = state.db_url()
st.title("Export")
campaigns = state.campaign_table(url)
ready = campaigns[campaigns["status"].isin(EXPORTABLE_STATUSES)]
if ready.empty:
    st.info(f"No campaign can be exported yet: exports read campaigns that are "
            f"{', '.join(EXPORTABLE_STATUSES)}.")
    st.stop()

labels = {int(r["id"]): f"#{r['id']} {r['name']} ({r['problem']}, {r['strategy']}, best "
          f"{state.fmt_score(r['best_score'])})" for _, r in ready.iterrows()}
chosen = st.multiselect("Campaigns", list(labels), format_func=labels.get, placeholder="choose campaigns",
                        default=[state.param_int("campaign")] if state.param_int("campaign") in labels else None)
formats = st.multiselect("Formats", list(FORMATS), default=list(FORMATS),
                         help="sft: chat records; preference: chosen/rejected pairs; rl: step records with rewards")
with st.expander("Filters", expanded=True):
    left, right = st.columns(2)
    with left:
        all_valid = st.checkbox("Keep every valid program (not only improvements on the parent)")
        use_top = st.checkbox("Only the best trajectories")
        top_pct = st.slider("Top % of trajectories per campaign", 1, 100, 50, disabled=not use_top)
        prefix = st.checkbox("Only the steps up to each trajectory's best")
    with right:
        min_gap = st.number_input("Minimum reward gap of a preference pair", min_value=0.0, value=0.0, step=0.05)
        guidance = st.checkbox("Keep R^3L reflection guidance in retry prompts")
        problems = sorted(ready[ready["id"].isin(chosen)]["problem"].unique()) if chosen else []
        validation = st.multiselect("Problems for the validation split", problems)

filters = ExportFilters(improved_only=not all_valid, top_pct=float(top_pct) if use_top else None,
                        prefix_to_best=prefix, min_gap=float(min_gap), keep_guidance=guidance,
                        validation_problems=tuple(validation))

if chosen and formats and st.button("Preview counts", icon=":material/preview:"):
    try:
        preview = preview_export(chosen, formats=formats, filters=filters, db_url=url)
    except ExportError as exc:
        st.error(str(exc))
    else:
        st.session_state["preview"] = preview
preview = st.session_state.get("preview")
if preview is not None:
    counts = [{"format": fmt, "split": split, "rows": n}
              for fmt in preview.formats for split, n in (preview.row_counts.get(fmt) or {"train": 0}).items()]
    dropped = [{"format": fmt, "reason": reason, "rows": n}
               for fmt, reasons in preview.dropped.items() for reason, n in reasons.items()]
    st.markdown(f"**Preview** of campaigns {', '.join(map(str, preview.campaigns))}: {preview.rows:,} rows "
                f"from {preview.steps:,} steps")
    left, right = st.columns(2)
    left.dataframe(counts, hide_index=True, width="stretch")
    right.dataframe(dropped, hide_index=True, width="stretch")
    st.code(preview.command, language="bash")

st.divider()
out_dir = st.text_input("Output folder", placeholder="e.g. data/erdos-v1 (created; must be empty or absent)")
overwrite = st.checkbox("Replace an earlier export in that folder")
if st.button("Write dataset", type="primary", disabled=not (chosen and formats and out_dir), icon=":material/save:"):
    with st.spinner("Exporting..."):
        try:
            report = export_dataset(chosen, out_dir=out_dir, formats=formats, filters=filters, db_url=url,
                                    overwrite=overwrite)
        except ExportError as exc:
            st.error(str(exc))
        else:
            state.forget_lists()
            st.success(f"Export {report.id}: {report.rows:,} rows written to {report.out_dir}")
            st.dataframe([{"file": f, **v} for f, v in report.files.items()], hide_index=True, width="stretch")

st.subheader("Earlier exports")
exports = state.export_table(url)
if exports.empty:
    st.caption("None yet.")
else:
    st.dataframe(exports, hide_index=True, width="stretch",
                 column_config={"replay_of": st.column_config.NumberColumn("replay of", format="%d"),
                                "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm")})
