"""A local OpenAI-compatible chat-completions server for tests (no real provider, ever).

`StubLLMServer` is a real HTTP server (stdlib `ThreadingHTTPServer` on 127.0.0.1, an ephemeral
port, a daemon thread) that speaks the OpenAI wire format well enough for litellm's `openai/`
and `hosted_vllm/` providers:

- `POST /v1/chat/completions` (and `/chat/completions`): a non-streaming JSON completion, or
  Server-Sent Events when the request has `"stream": true`;
- `GET /v1/models` (and `/models`): one model.

What it answers is scripted: a `responder(request_json) -> content` callable, or a queue of
contents consumed one per successful completion, else `default_content`. Usage counts are
derived from text lengths (about 4 characters a token), so tests can assert on them.

Faults are injected per chat-request index (0-based, in arrival order) with `faults=`: a
mapping {index: fault}, a sequence (position = index, None = no fault) or a callable
(index, request_json) -> fault | None. A fault is a `Fault` or a shorthand string:
"429" (rate limit with Retry-After: 1), "500", "503", "401", "drop" (close the socket without
a response), "reset" (abort with a TCP reset), "empty" (empty content), "invalid_json"
(a 200 with a body that is not JSON), "truncated_json" (a 200 whose JSON body is cut off),
"hang" (headers sent, then nothing until the server stops), "stall" (nothing at all sent),
"trickle" (headers, then one byte every `interval_s`, never finishing) and "delay:SECONDS".

Every request is recorded (method, path, headers, parsed body) in `requests`; `max_concurrent`
is the largest number of chat requests that were being handled at the same time. Use it as a
context manager; `url` is "http://127.0.0.1:PORT/v1". Stopping is bounded in time: handler
threads are daemons and every wait inside a handler is cut short when the server stops.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import math
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

__all__ = ["Fault", "RecordedRequest", "StubLLMServer", "count_tokens", "cycling"]


def cycling(contents: Sequence[str]) -> Callable[[dict], str]:
    """A responder that answers contents[0], contents[1], ... and starts again after the last
    (thread-safe: the server handles requests concurrently)."""
    counter = itertools.count()
    lock = threading.Lock()

    def responder(body: dict) -> str:
        with lock:
            return contents[next(counter) % len(contents)]

    return responder


def count_tokens(text: str) -> int:
    """The stub's token count for a text: about four characters a token, at least 1 if non-empty."""
    return math.ceil(len(text) / 4)


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
      kind: "status", "drop", "reset", "empty", "invalid_json", "truncated_json", "delay",
        "hang", "stall" or "trickle".
      status: HTTP status for kind "status".
      retry_after: value of the Retry-After header for kind "status" (None: no header).
      delay_s: for "delay", seconds to wait before answering normally.
      interval_s: for "trickle", seconds between two bytes.
      message: error message in the body for kind "status".
    """

    kind: str
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 0.0
    interval_s: float = 0.2
    message: str = ""

    @classmethod
    def http(cls, status: int, *, retry_after: float | None = None, message: str = "") -> "Fault":
        return cls("status", status=status, retry_after=retry_after, message=message)

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1) -> "Fault":
        return cls.http(429, retry_after=retry_after, message="Rate limit reached, slow down")

    @classmethod
    def delay(cls, seconds: float) -> "Fault":
        return cls("delay", delay_s=seconds)

    @classmethod
    def trickle(cls, interval_s: float = 0.2) -> "Fault":
        return cls("trickle", interval_s=interval_s)

    @classmethod
    def parse(cls, spec: "FaultSpec") -> "Fault | None":
        """A Fault from a Fault, None or a shorthand string (see the module docstring)."""
        if spec is None or isinstance(spec, Fault):
            return spec
        text = str(spec).strip().lower()
        if text.isdigit():
            status = int(text)
            if status == 429:
                return cls.rate_limit(1)
            messages = {401: "Incorrect API key provided", 403: "Forbidden", 404: "Model not found",
                        400: "Bad request"}
            return cls.http(status, message=messages.get(status, f"Stub server error {status}"))
        if text.startswith("delay:"):
            return cls.delay(float(text.split(":", 1)[1]))
        if text.startswith("trickle:"):
            return cls.trickle(float(text.split(":", 1)[1]))
        if text in {"drop", "reset", "empty", "invalid_json", "truncated_json", "hang", "stall",
                    "trickle"}:
            return cls(text)
        raise ValueError(f"unknown fault spec {spec!r}")


FaultSpec = Union[Fault, str, None]
FaultScript = Union[
    Mapping[int, FaultSpec], Sequence[FaultSpec], Callable[[int, Mapping[str, Any]], FaultSpec]
]


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received.

    Attributes:
      index: arrival order among chat requests (0-based), -1 for other requests.
      method / path: HTTP method and path.
      headers: request headers, names lower-cased.
      body: parsed JSON body (None when absent or not JSON).
      raw: the raw body bytes.
      fault: the fault applied to it, if any.
      received_at: time.monotonic() on arrival.
    """

    index: int
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes
    fault: Fault | None
    received_at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    stub: "StubLLMServer"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    error_content_type = "application/json"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # quiet

    # -- routing -------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        stub = self.server.stub
        path = self.path.split("?", 1)[0].rstrip("/")
        stub._record(-1, self, None, b"", None)
        if path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": stub.model or "stub-model", "object": "model", "created": 0,
                 "owned_by": "stub"}]})
        else:
            self._send_json(404, _error_body(f"no route {path}", "not_found_error", None))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        stub = self.server.stub
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if path not in ("/v1/chat/completions", "/chat/completions"):
            stub._record(-1, self, body, raw, None)
            self._send_json(404, _error_body(f"no route {path}", "not_found_error", None))
            return
        index, fault = stub._admit(self, body, raw)
        try:
            self._chat(stub, body if isinstance(body, dict) else {}, fault)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True  # the client went away; nothing more to do
        finally:
            stub._leave()

    # -- chat completions ----------------------------------------------------------------

    def _chat(self, stub: "StubLLMServer", body: dict, fault: Fault | None) -> None:
        if stub.api_key is not None:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {stub.api_key}":
                self._send_json(401, _error_body("Incorrect API key provided",
                                                 "invalid_request_error", "invalid_api_key"))
                return
        if stub.latency_s and not stub._wait(stub.latency_s):
            return self._abort()
        kind = fault.kind if fault else ""
        if kind == "status":
            assert fault is not None
            headers = {}
            if fault.retry_after is not None:
                ra = fault.retry_after
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            etype = {429: "rate_limit_error", 401: "invalid_request_error",
                     400: "invalid_request_error", 404: "not_found_error"}.get(
                fault.status, "server_error")
            code = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(fault.status)
            self._send_json(fault.status, _error_body(
                fault.message or f"stub error {fault.status}", etype, code), headers)
            return
        if kind == "drop":
            return self._abort()
        if kind == "reset":
            return self._abort(reset=True)
        if kind == "stall":
            stub._wait(stub.hang_max_s)
            return self._abort()
        if kind == "hang":
            self._send_head(200, "application/json", 1_000_000)
            stub._wait(stub.hang_max_s)
            return self._abort()
        if kind == "trickle":
            assert fault is not None
            self._send_head(200, "application/json", 1_000_000)
            deadline = time.monotonic() + stub.hang_max_s
            while time.monotonic() < deadline and stub._wait(fault.interval_s):
                self.wfile.write(b" ")
                self.wfile.flush()
            return self._abort()
        if kind == "delay":
            assert fault is not None
            if not stub._wait(fault.delay_s):
                return self._abort()
        if kind == "invalid_json":
            self._send_bytes(200, "application/json", b"<html>this is not json</html>")
            return
        if kind == "empty":
            content = ""
        elif kind == "truncated_json":  # a faulted answer does not consume scripted content
            content = "x" * 64
        else:
            try:
                content = stub._next_content(body)
            except Exception as exc:  # a broken responder shows up as a 500, and in .errors
                stub.errors.append(exc)
                self._send_json(500, _error_body(f"stub responder failed: {exc!r}",
                                                 "server_error", None))
                return
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and max_tokens > 0 and count_tokens(content) > max_tokens:
            content, finish = content[: 4 * max_tokens], "length"
        prompt_text = "".join(_text_of(m.get("content")) for m in body.get("messages") or []
                              if isinstance(m, dict))
        usage = {"prompt_tokens": count_tokens(prompt_text),
                 "completion_tokens": count_tokens(content)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = str(body.get("model") or stub.model or "stub-model")
        rid = f"chatcmpl-stub-{stub._next_id()}"
        if body.get("stream"):
            self._stream(rid, model, content, finish, usage, body)
            return
        payload = {
            "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage,
        }
        data = json.dumps(payload).encode()
        if kind == "truncated_json":
            data = data[: max(1, len(data) // 2)]
            self._send_bytes(200, "application/json", data)  # Content-Length matches the cut body
            return
        self._send_bytes(200, "application/json", data)

    def _stream(self, rid: str, model: str, content: str, finish: str, usage: dict,
                body: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        created = int(time.time())

        def chunk(delta: dict, finish_reason: str | None, extra: dict | None = None) -> None:
            obj = {"id": rid, "object": "chat.completion.chunk", "created": created,
                   "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            if extra:
                obj.update(extra)
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""}, None)
        for i in range(0, len(content), 16):
            chunk({"content": content[i:i + 16]}, None)
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            obj = {"id": rid, "object": "chat.completion.chunk", "created": created,
                   "model": model, "choices": [], "usage": usage}
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # -- low-level writers ---------------------------------------------------------------

    def _send_head(self, status: int, ctype: str, length: int,
                   headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def _send_bytes(self, status: int, ctype: str, data: bytes,
                    headers: Mapping[str, str] | None = None) -> None:
        self._send_head(status, ctype, len(data), headers)
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, "application/json", json.dumps(obj).encode(), headers)

    def _abort(self, reset: bool = False) -> None:
        """Closes the connection without (finishing) a response."""
        self.close_connection = True
        try:
            if reset:  # SO_LINGER 0: close() sends a TCP RST
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _error_body(message: str, etype: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


class StubLLMServer:
    """A scripted OpenAI-compatible server on 127.0.0.1 (see the module docstring).

    Args:
      responder: request json -> response content; takes precedence over `contents`.
      contents: contents returned in order, one per successful completion; when exhausted,
        `default_content` is returned.
      faults: fault script by chat-request index (mapping, sequence or callable).
      latency_s: fixed delay before every chat answer (and before every fault).
      model: model id listed by /v1/models (the completion echoes the requested model).
      api_key: when set, chat requests without "Authorization: Bearer <api_key>" get a 401.
      default_content: content when no responder and no queued content remain.
      hang_max_s: upper bound on how long "hang", "stall" and "trickle" keep a connection open
        (they also end when the server stops).
    """

    def __init__(
        self,
        responder: Callable[[Mapping[str, Any]], str] | None = None,
        contents: Iterable[str] | None = None,
        *,
        faults: FaultScript | None = None,
        latency_s: float = 0.0,
        model: str | None = None,
        api_key: str | None = None,
        default_content: str = "ok",
        hang_max_s: float = 120.0,
    ) -> None:
        self.responder = responder
        self.contents: collections.deque[str] = collections.deque(contents or ())
        self.faults = faults
        self.latency_s = latency_s
        self.model = model
        self.api_key = api_key
        self.default_content = default_content
        self.hang_max_s = hang_max_s
        self.requests: list[RecordedRequest] = []
        self.errors: list[BaseException] = []  # exceptions raised by the responder
        self.max_concurrent = 0
        self._in_flight = 0
        self._chat_count = 0
        self._ids = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "StubLLMServer":
        if self._httpd is not None:
            return self
        self._stop.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.stub = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stub-llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops serving; open hanging responses are ended. Bounded by about timeout_s."""
        httpd, self._httpd = self._httpd, None
        self._stop.set()
        if httpd is None:
            return
        done = threading.Thread(target=httpd.shutdown, daemon=True)
        done.start()
        done.join(timeout_s)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> "StubLLMServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- introspection ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("stub server is not running")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL with the /v1 suffix, as OpenAI-compatible clients expect."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.index >= 0]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    # -- used by the handler -----------------------------------------------------------------

    def _record(self, index: int, handler: _Handler, body: Any, raw: bytes,
                fault: Fault | None) -> None:
        rec = RecordedRequest(
            index=index, method=handler.command, path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()}, body=body, raw=raw,
            fault=fault, received_at=time.monotonic())
        with self._lock:
            self.requests.append(rec)

    def _admit(self, handler: _Handler, body: Any, raw: bytes) -> tuple[int, Fault | None]:
        with self._lock:
            index = self._chat_count
            self._chat_count += 1
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
        fault = Fault.parse(self._fault_for(index, body if isinstance(body, dict) else {}))
        self._record(index, handler, body, raw, fault)
        return index, fault

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _fault_for(self, index: int, body: Mapping[str, Any]) -> FaultSpec:
        script = self.faults
        if script is None:
            return None
        if callable(script):
            return script(index, body)
        if isinstance(script, Mapping):
            return script.get(index)
        if isinstance(script, (str, Fault)):
            return script if index == 0 else None
        return script[index] if index < len(script) else None

    def _next_content(self, body: Mapping[str, Any]) -> str:
        if self.responder is not None:
            return str(self.responder(body))
        with self._lock:
            return self.contents.popleft() if self.contents else self.default_content

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _wait(self, seconds: float) -> bool:
        """Sleeps up to seconds; False if the server is stopping."""
        return not self._stop.wait(max(0.0, seconds))
