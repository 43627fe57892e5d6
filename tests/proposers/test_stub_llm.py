"""The stub server itself: wire format, recording, faults, bounded shutdown."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.stub_llm import Fault, StubLLMServer, count_tokens


def post(url: str, body: dict, timeout: float = 5.0, headers: dict | None = None):
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    return urllib.request.urlopen(req, timeout=timeout)


def test_url_models_and_completion_format():
    with StubLLMServer(responder=lambda body: body["messages"][-1]["content"].upper(),
                       model="m1") as stub:
        assert stub.url.startswith("http://127.0.0.1:") and stub.url.endswith("/v1")
        models = json.load(urllib.request.urlopen(stub.url + "/models", timeout=5))
        assert models["data"][0]["id"] == "m1"
        resp = json.load(post(stub.url, {"model": "m1",
                                         "messages": [{"role": "user", "content": "hey"}]}))
        assert resp["object"] == "chat.completion"
        assert resp["choices"][0]["message"] == {"role": "assistant", "content": "HEY"}
        assert resp["choices"][0]["finish_reason"] == "stop"
        assert resp["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        # Without /v1 too.
        resp = json.load(post(stub.url[: -len("/v1")],
                              {"messages": [{"role": "user", "content": "bare"}]}))
        assert resp["choices"][0]["message"]["content"] == "BARE"


def test_broken_responder_is_a_500_and_recorded():
    def responder(body):
        raise RuntimeError("boom")

    with StubLLMServer(responder=responder) as stub:
        with pytest.raises(urllib.error.HTTPError) as err:
            post(stub.url, {"messages": []})
    assert err.value.code == 500 and isinstance(stub.errors[0], RuntimeError)


def test_content_queue_then_default_and_max_tokens_truncates():
    with StubLLMServer(contents=["a" * 40], default_content="dflt") as stub:
        r1 = json.load(post(stub.url, {"messages": [], "max_tokens": 2}))
        r2 = json.load(post(stub.url, {"messages": []}))
    assert r1["choices"][0]["message"]["content"] == "a" * 8
    assert r1["choices"][0]["finish_reason"] == "length"
    assert r2["choices"][0]["message"]["content"] == "dflt"
    assert count_tokens("dflt") == 1


def test_records_requests_and_headers():
    with StubLLMServer() as stub:
        post(stub.url, {"model": "x", "messages": []}, headers={"X-Probe": "1"}).read()
        (rec,) = stub.chat_requests
    assert rec.index == 0 and rec.method == "POST" and rec.body["model"] == "x"
    assert rec.headers["x-probe"] == "1"


def test_status_faults_and_retry_after():
    with StubLLMServer(faults={0: "429", 1: "401", 2: Fault.http(503, retry_after=2.5)}) as stub:
        with pytest.raises(urllib.error.HTTPError) as e429:
            post(stub.url, {"messages": []})
        with pytest.raises(urllib.error.HTTPError) as e401:
            post(stub.url, {"messages": []})
        with pytest.raises(urllib.error.HTTPError) as e503:
            post(stub.url, {"messages": []})
    assert e429.value.code == 429 and e429.value.headers["Retry-After"] == "1"
    assert json.load(e429.value)["error"]["code"] == "rate_limit_exceeded"
    assert e401.value.code == 401
    assert e503.value.code == 503 and e503.value.headers["Retry-After"] == "2.5"


def test_api_key_check():
    with StubLLMServer(api_key="good") as stub:
        with pytest.raises(urllib.error.HTTPError) as bad:
            post(stub.url, {"messages": []}, headers={"Authorization": "Bearer bad"})
        ok = post(stub.url, {"messages": []}, headers={"Authorization": "Bearer good"})
    assert bad.value.code == 401 and ok.status == 200


def test_drop_and_invalid_bodies():
    with StubLLMServer(faults=["drop", "invalid_json", "truncated_json"]) as stub:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
            post(stub.url, {"messages": []})
        with pytest.raises(json.JSONDecodeError):
            json.load(post(stub.url, {"messages": []}))
        with pytest.raises(json.JSONDecodeError):
            json.load(post(stub.url, {"messages": []}))


def test_streaming_sse():
    with StubLLMServer(contents=["hello streaming world"]) as stub:
        raw = post(stub.url, {"messages": [], "stream": True,
                              "stream_options": {"include_usage": True}}).read().decode()
    events = [line[len("data: "):] for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "hello streaming world"
    assert chunks[-1]["usage"]["completion_tokens"] == count_tokens(text)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic notes on litellm's stream types
def test_litellm_streaming_against_stub():
    import litellm

    with StubLLMServer(contents=["streamed answer"]) as stub:
        chunks = litellm.completion(model="openai/stub", api_base=stub.url, api_key="k",
                                    messages=[{"role": "user", "content": "hi"}], stream=True,
                                    timeout=5, num_retries=0)
        text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
        assert stub.chat_requests[0].body["stream"] is True
    assert text == "streamed answer"


def test_max_concurrent_is_recorded():
    with StubLLMServer(latency_s=0.3) as stub:
        threads = [threading.Thread(target=lambda: post(stub.url, {"messages": []}).read())
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert stub.max_concurrent == 3 and stub.in_flight == 0


@pytest.mark.parametrize("fault", ["hang", "stall", "trickle"])
def test_stop_is_bounded_with_open_never_ending_responses(fault):
    stub = StubLLMServer(faults=lambda i, body: fault, hang_max_s=60).start()
    errors: list[BaseException] = []

    def client():
        try:
            post(stub.url, {"messages": []}, timeout=30).read()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while stub.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stub.in_flight == 1
    start = time.monotonic()
    stub.stop()
    assert time.monotonic() - start < 5
    t.join(5)
    assert not t.is_alive()  # the client saw the connection end
