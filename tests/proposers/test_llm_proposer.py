"""LiteLLMProposer against the real stub server over HTTP (never a real provider)."""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import time

import pytest

from discovery.proposers.base import Proposal
from discovery.proposers.llm import LiteLLMProposer, ProposerUnreachable
from discovery.strategy import seed_for
from tests.proposers.conftest import make_move
from tests.stub_llm import Fault, StubLLMServer, count_tokens

SECRET = "sk-test-SECRET-0123456789"
FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)


def proposer(stub: StubLLMServer, model: str = "openai/stub-model", **kw) -> LiteLLMProposer:
    kw.setdefault("api_key", SECRET)
    for k, v in FAST.items():
        kw.setdefault(k, v)
    return LiteLLMProposer(model, api_base=stub.url, **kw)


def prompt_text(move) -> str:
    return "".join(m["content"] for m in move.messages)


def assert_no_secret(p: Proposal) -> None:
    for value in vars(p).values():
        assert SECRET not in str(value)


@pytest.mark.parametrize("model", ["openai/stub-model", "hosted_vllm/stub-model"])
def test_success_returns_text_and_counts_tokens(stub, move, model):
    answer = "```python\ndef f():\n    return 42\n```"
    stub.contents.append(answer)
    p = proposer(stub, model, temperature=0.3, max_tokens=256).propose(move, 1)

    assert p.ok and p.error == ""
    assert p.text == answer
    assert p.model == model
    assert p.attempts == 1
    assert p.finish_reason == "stop"
    assert p.prompt_tokens == count_tokens(prompt_text(move))
    assert p.completion_tokens == count_tokens(answer)
    assert p.latency_s > 0
    assert p.cost_usd == 0.0  # unpriced model, no prices given
    # What went over the wire.
    (req,) = stub.chat_requests
    assert req.body["model"] == "stub-model"
    assert req.body["messages"] == [dict(m) for m in move.messages]
    assert req.body["temperature"] == 0.3
    assert req.body["max_tokens"] == 256
    assert req.body["seed"] == seed_for(move.seed, 1) % (2**31 - 1)
    assert not req.body.get("stream")
    assert "num_retries" not in req.body and "api_key" not in req.body
    assert req.headers["authorization"] == f"Bearer {SECRET}"


def test_seed_depends_on_sample(stub, move):
    prop = proposer(stub)
    prop.propose(move, 0)
    prop.propose(move, 1)
    prop.propose(move, 0)
    seeds = [r.body["seed"] for r in stub.chat_requests]
    assert seeds[0] == seeds[2] != seeds[1]


def test_rate_limit_then_success_honours_retry_after(move):
    with StubLLMServer(faults={0: Fault.rate_limit(retry_after=1)}) as stub:
        p = proposer(stub).propose(move, 0)
        first, second = stub.chat_requests
    assert p.ok and p.attempts == 2 and p.text == "ok"
    assert second.received_at - first.received_at >= 0.95  # Retry-After: 1 honoured
    assert p.latency_s >= 0.95  # latency includes the retries


def test_server_errors_twice_then_success(move):
    with StubLLMServer(faults=["500", "503"], contents=["fixed"]) as stub:
        p = proposer(stub, "hosted_vllm/stub-model").propose(move, 0)
        assert len(stub.chat_requests) == 3
    assert p.ok and p.attempts == 3 and p.text == "fixed"


def test_persistent_server_error_gives_up_after_max_retries(move):
    with StubLLMServer(faults=lambda i, body: "500") as stub:
        p = proposer(stub, max_retries=2).propose(move, 0)
        assert len(stub.chat_requests) == 3
    assert not p.ok and p.text == "" and p.attempts == 3
    assert "openai/stub-model" in p.error and "500" in p.error
    assert "\n" not in p.error


@pytest.mark.parametrize("model", ["openai/stub-model", "hosted_vllm/stub-model"])
def test_auth_error_fails_immediately(move, model, caplog):
    caplog.set_level(logging.DEBUG)
    with StubLLMServer(api_key="the-right-key") as stub:
        p = proposer(stub, model).propose(move, 0)
        assert len(stub.chat_requests) == 1  # no retry
    assert not p.ok and p.attempts == 1 and p.text == ""
    assert model in p.error and "401" in p.error and "authentication" in p.error.lower()
    assert "\n" not in p.error
    assert_no_secret(p)
    assert SECRET not in caplog.text


def test_bad_request_is_not_retried(move):
    with StubLLMServer(faults=lambda i, body: "400") as stub:
        p = proposer(stub).propose(move, 0)
        assert len(stub.chat_requests) == 1
    assert not p.ok and p.attempts == 1 and "400" in p.error


def test_missing_key_for_openai_provider_is_not_retried(move):
    with StubLLMServer() as stub:
        p = LiteLLMProposer("openai/stub-model", api_base=stub.url, **FAST).propose(move, 0)
    assert not p.ok and p.attempts == 1 and "key" in p.error.lower()


def test_server_slower_than_timeout_fails_after_retries(move):
    with StubLLMServer(faults=lambda i, body: Fault.delay(30), hang_max_s=30) as stub:
        start = time.monotonic()
        p = proposer(stub, timeout_s=0.5, max_retries=2).propose(move, 0)
        elapsed = time.monotonic() - start
        assert len(stub.chat_requests) == 3
    assert not p.ok and p.attempts == 3
    assert "timed out" in p.error
    assert elapsed < 20  # a generous safety bound: it returned, it did not wait 30 s x 3


@pytest.mark.parametrize("fault", ["drop", "reset"])
@pytest.mark.parametrize("model", ["openai/stub-model", "hosted_vllm/stub-model"])
def test_dropped_connection_is_retried(move, fault, model):
    with StubLLMServer(faults={0: fault}, contents=["after drop"]) as stub:
        p = proposer(stub, model).propose(move, 0)
    assert p.ok and p.attempts == 2 and p.text == "after drop"


@pytest.mark.parametrize("fault", ["invalid_json", "truncated_json"])
@pytest.mark.parametrize("model", ["openai/stub-model", "hosted_vllm/stub-model"])
def test_malformed_body_is_retried(move, fault, model):
    with StubLLMServer(faults={0: fault}, contents=["good"]) as stub:
        p = proposer(stub, model).propose(move, 0)
    assert p.ok and p.attempts == 2 and p.text == "good"


@pytest.mark.parametrize("model", ["openai/stub-model", "hosted_vllm/stub-model"])
def test_never_ending_response_is_cut_off(move, model):
    # A trickle of bytes defeats the HTTP client's read timeout; only the hard cap ends it.
    with StubLLMServer(faults={0: Fault.trickle(0.1)}, contents=["finally"], hang_max_s=30) as stub:
        start = time.monotonic()
        p = proposer(stub, model, timeout_s=0.5).propose(move, 0)
        assert time.monotonic() - start < 15
    assert p.ok and p.attempts == 2 and p.text == "finally"


def test_never_ending_responses_fail_within_the_deadline(move):
    with StubLLMServer(faults=lambda i, body: "trickle", hang_max_s=30) as stub:
        prop = proposer(stub, timeout_s=0.4, max_retries=1)
        start = time.monotonic()
        p = prop.propose(move, 0)
        elapsed = time.monotonic() - start
        assert len(stub.chat_requests) == 2
    assert not p.ok and p.attempts == 2 and "timed out" in p.error
    assert elapsed <= prop.deadline_s + 1.0


def test_headers_then_silence_is_a_timeout(move):
    with StubLLMServer(faults={0: "hang"}, hang_max_s=30) as stub:
        p = proposer(stub, timeout_s=0.5).propose(move, 0)
    assert p.ok and p.attempts == 2


def test_empty_content_is_a_successful_empty_proposal(move):
    with StubLLMServer(faults={0: "empty"}) as stub:
        p = proposer(stub).propose(move, 0)
    assert p.ok and p.text == "" and p.attempts == 1
    assert p.completion_tokens == 0 and p.prompt_tokens > 0


def test_concurrency_bound_is_respected():
    with StubLLMServer(latency_s=0.3) as stub:
        prop = proposer(stub, concurrency=2)
        moves = [make_move(seed=i) for i in range(6)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda m: prop.propose(m, 0), moves))
        assert len(stub.chat_requests) == 6
        assert stub.max_concurrent == 2
    assert all(r.ok for r in results)


def test_cost_from_per_million_token_prices(stub, move):
    stub.contents.append("x" * 400)  # 100 completion tokens
    p = proposer(stub, input_cost_per_mtok=2.0, output_cost_per_mtok=10.0).propose(move, 0)
    expected = (p.prompt_tokens * 2.0 + p.completion_tokens * 10.0) / 1e6
    assert p.completion_tokens == 100
    assert p.cost_usd == pytest.approx(expected)
    assert p.cost_usd > 0


def test_cost_from_litellm_price_table_for_a_priced_model(stub, move):
    # The local (offline) price map knows gpt-4o-mini; the request still goes to the stub.
    p = proposer(stub, "openai/gpt-4o-mini").propose(move, 0)
    assert p.ok and p.cost_usd > 0


def test_preflight_closed_port_raises_one_line_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    api_base = f"http://127.0.0.1:{port}/v1"
    prop = LiteLLMProposer("openai/stub-model", api_base=api_base, api_key=SECRET,
                           timeout_s=2.0, **FAST)
    with pytest.raises(ProposerUnreachable) as info:
        prop.preflight()
    msg = str(info.value)
    assert "\n" not in msg
    assert "openai/stub-model" in msg and api_base in msg
    assert "--api-base" in msg and "DISCOVERY_MODEL" in msg and "OPENAI_API_KEY" in msg
    assert SECRET not in msg


def test_preflight_auth_rejected_raises():
    with StubLLMServer(api_key="the-right-key") as stub:
        prop = proposer(stub, "hosted_vllm/stub-model")
        with pytest.raises(ProposerUnreachable) as info:
            prop.preflight()
    msg = str(info.value)
    assert "401" in msg and "rejected" in msg and "HOSTED_VLLM_API_KEY" in msg
    assert SECRET not in msg and "\n" not in msg


def test_preflight_success_sends_one_token_request(stub):
    p = proposer(stub).preflight()
    assert p.ok
    (req,) = stub.chat_requests
    assert req.body["max_tokens"] == 1


def test_preflight_rate_limited_counts_as_reachable():
    with StubLLMServer(faults=lambda i, body: "429") as stub:
        p = proposer(stub).preflight()
    assert not p.ok and "429" in p.error


def test_describe_and_repr_hold_no_secret(stub):
    prop = proposer(stub, extra_params={"top_p": 0.9,
                                        "extra_headers": {"Authorization": "Bearer zzz",
                                                          "X-Trace": "t1"}})
    d = prop.describe()
    assert d["model"] == "openai/stub-model" and d["api_base"] == stub.url
    assert d["api_key_set"] is True and d["concurrency"] == 4
    assert d["extra_params"]["top_p"] == 0.9
    assert d["extra_params"]["extra_headers"] == {"Authorization": "***", "X-Trace": "t1"}
    assert SECRET not in repr(d) and "zzz" not in repr(d)
    assert SECRET not in repr(prop)
    assert prop.name == "openai/stub-model"


def test_extra_params_are_sent_but_may_not_override_owned_ones(stub, move):
    proposer(stub, extra_params={"top_p": 0.5, "stop": ["###"]}).propose(move, 0)
    (req,) = stub.chat_requests
    assert req.body["top_p"] == 0.5 and req.body["stop"] == ["###"]
    with pytest.raises(ValueError):
        LiteLLMProposer("openai/x", extra_params={"api_key": "k"})
    with pytest.raises(ValueError):
        LiteLLMProposer("openai/x", extra_params={"stream": True})


def test_no_secret_in_logs_or_proposals_across_failures(move, caplog):
    caplog.set_level(logging.DEBUG)
    with StubLLMServer(faults=["429", "500", "drop"]) as stub:
        p = proposer(stub, backoff_max_s=0.05).propose(move, 0)
    # 429 comes with Retry-After: 1; everything else retried quickly
    assert p.ok and p.attempts == 4
    assert_no_secret(p)
    assert SECRET not in caplog.text


def test_retry_after_beyond_the_deadline_gives_up_at_once(move):
    with StubLLMServer(faults=lambda i, body: Fault.rate_limit(retry_after=100)) as stub:
        start = time.monotonic()
        p = proposer(stub, timeout_s=0.5, max_retries=3).propose(move, 0)
        assert time.monotonic() - start < 5
        assert len(stub.chat_requests) == 1
    assert not p.ok and p.attempts == 1 and "429" in p.error


def test_retry_after_header_forms():
    from email.utils import formatdate

    from discovery.proposers.llm import _retry_after

    class Err(Exception):
        def __init__(self, headers):
            self.litellm_response_headers = headers

    assert _retry_after(Err({"retry-after": "3"})) == 3.0
    assert _retry_after(Err({"retry-after-ms": "250"})) == 0.25
    assert 5 < _retry_after(Err({"retry-after": formatdate(time.time() + 10, usegmt=True)})) <= 10
    assert _retry_after(Err({})) is None
    assert _retry_after(Exception("no headers")) is None
