"""The database layer against real SQLite files: migrations, idempotency keys, pragmas, errors."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, text

from db import repository as repo
from db.engine import DatabaseError, alembic_head, dispose_engines, get_engine


@pytest.fixture()
def engine(tmp_path):
    eng = get_engine(f"sqlite:///{tmp_path / 't.db'}")
    yield eng
    dispose_engines()


def _campaign(engine, **kw):
    args = dict(name="c", problem="p", strategy="simpletes", model="offline", seed=1, budget=4,
                direction="minimize", evaluator_version="1", config={"problem": "p"})
    args.update(kw)
    return repo.create_campaign(engine, **args)


def _step(engine, cid, tid, index=0, sample=0, candidate=True):
    cand = dict(code=f"x = {index}{sample}", program_hash=f"h{index}{sample}", parent_ids=[], diff="") if candidate else None
    return repo.record_step(
        engine, campaign_id=cid, trajectory_id=tid, index=index, sample=sample, mode="propose",
        messages=[{"role": "user", "content": "hi"}], parent_candidate_id=None, response="r", model="offline",
        prompt_tokens=3, completion_tokens=5, cost_usd=0.25, latency_s=0.1, attempts=1,
        status="ok" if candidate else "parse_error", error="" if candidate else "bad", candidate=cand,
    )


def _fields(score=0.5, status="ok"):
    return dict(status=status, score=score, metrics={"n": 3}, feedback="fine", stdout="", stderr="",
                duration_s=0.1, cpu_s=0.1, backend="process", evaluator_version="1")


def test_migrations_create_every_table_and_sqlite_pragmas(engine):
    tables = set(inspect(engine).get_table_names())
    assert {"campaign", "trajectory", "step", "candidate", "evaluation", "comparison", "comparison_run",
            "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == alembic_head()


def test_reopening_a_database_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    cid = _campaign(get_engine(url))
    dispose_engines()
    assert repo.get_campaign(get_engine(url), cid).problem == "p"
    dispose_engines()


def test_steps_candidates_and_evaluations_are_idempotent(engine):
    cid = _campaign(engine)
    tid = repo.ensure_trajectory(engine, cid, 0)
    assert repo.ensure_trajectory(engine, cid, 0) == tid
    first = _step(engine, cid, tid)
    again = _step(engine, cid, tid)
    assert first == again and first[1] is not None
    ev1 = repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="h00", fields=_fields())
    ev2 = repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="h00", fields=_fields())
    assert ev1 == ev2
    assert repo.count_rows(engine, cid) == {"trajectories": 1, "steps": 1, "candidates": 1, "evaluations": 1}


def test_identical_programs_share_one_evaluation(engine):
    cid = _campaign(engine)
    tid = repo.ensure_trajectory(engine, cid, 0)
    _, c1 = _step(engine, cid, tid, sample=0)
    _, c2 = _step(engine, cid, tid, sample=1)
    ev = repo.record_evaluation(engine, campaign_id=cid, candidate_id=c1, cache_key="same", fields=_fields(0.4))
    assert repo.record_evaluation(engine, campaign_id=cid, candidate_id=c2, cache_key="same", fields=_fields(0.9)) == ev
    (cand1, e1), (cand2, e2) = repo.candidates_of(engine, cid)
    assert e1.id == e2.id == ev and e2.score == 0.4


def test_load_move_and_finish_move(engine):
    cid = _campaign(engine)
    tid = repo.ensure_trajectory(engine, cid, 0)
    s0, c0 = _step(engine, cid, tid, sample=0)
    s1, c1 = _step(engine, cid, tid, sample=1, candidate=False)
    repo.record_evaluation(engine, campaign_id=cid, candidate_id=c0, cache_key="k", fields=_fields(0.3))
    stored = repo.load_move(engine, tid, 0)
    assert set(stored) == {0, 1}
    assert stored[0].evaluation.score == 0.3 and stored[1].candidate is None and stored[1].step.error == "bad"
    repo.finish_move(engine, {0: s0, 1: s1}, 0, {0: {"reward": 1.0}, 1: {"reward": None}})
    steps = repo.steps_of(engine, cid)
    assert [(s.committed, s.bookkeeping) for s in steps] == [(True, {"reward": 1.0}), (False, {"reward": None})]


def test_summary_best_respects_direction(engine):
    for direction, expected in (("minimize", 0.2), ("maximize", 0.7)):
        cid = _campaign(engine, direction=direction)
        tid = repo.ensure_trajectory(engine, cid, 0)
        for sample, score in enumerate((0.5, 0.2, 0.7)):
            _, cand = _step(engine, cid, tid, sample=sample)
            repo.record_evaluation(engine, campaign_id=cid, candidate_id=cand, cache_key=f"k{sample}", fields=_fields(score))
        s = repo.summarize(engine, cid)
        assert s.best_score == expected
        assert s.steps == 3 and s.cost_usd == pytest.approx(0.75) and s.prompt_tokens == 9


def test_concurrent_writers_from_threads_lose_nothing(engine):
    cid = _campaign(engine)
    tid = repo.ensure_trajectory(engine, cid, 0)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(25):
                _, cand = _step(engine, cid, tid, index=worker, sample=i)
                repo.record_evaluation(engine, campaign_id=cid, candidate_id=cand, cache_key=f"{worker}-{i}", fields=_fields())
                _step(engine, cid, tid, index=worker, sample=i)  # a retried write
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert repo.count_rows(engine, cid) == {"trajectories": 1, "steps": 150, "candidates": 150, "evaluations": 150}


def test_unknown_campaign_message_names_the_fix(engine):
    with pytest.raises(repo.UnknownCampaign, match="no campaign with id 42.*discovery run"):
        repo.get_campaign(engine, 42)


@pytest.mark.parametrize(
    "url, pattern",
    [
        ("not a url", "invalid database URL"),
        ("nosuchdialect://x/y", "unsupported database URL"),
        ("sqlite:////no/such/folder/x.db", "does not exist"),
    ],
)
def test_bad_database_urls_give_one_line_errors(url, pattern):
    with pytest.raises(DatabaseError, match=pattern) as info:
        get_engine(url)
    assert "\n" not in str(info.value)


def test_corrupt_database_file_is_reported_and_left_untouched(tmp_path):
    path = tmp_path / "corrupt.db"
    garbage = b"this is not a sqlite database" * 100
    path.write_bytes(garbage)
    with pytest.raises(DatabaseError, match="corrupt or not SQLite") as info:
        get_engine(f"sqlite:///{path}")
    assert "\n" not in str(info.value)
    assert path.read_bytes() == garbage
    dispose_engines()
