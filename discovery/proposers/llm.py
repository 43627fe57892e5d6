"""The LLM proposer: one chat completion per sample through litellm, with its own retry loop.

`LiteLLMProposer(model, api_base=..., api_key=...)` accepts any litellm provider string
(`openai/NAME`, `hosted_vllm/NAME`, `anthropic/NAME`, `ollama/NAME`, ...). `propose` is
synchronous and thread-safe; the platform calls it from worker threads.

What a call does:
- waits for one of `concurrency` slots shared by every call of the instance, and keeps it
  for the whole call (retries and back-off included), so a rate-limited provider is not
  hammered by the other workers meanwhile;
- sends `move.messages` with `temperature`, `max_tokens`, a seed derived from (move.seed,
  sample) (dropped by litellm for providers that do not accept one: `drop_params=True`), the
  per-attempt `timeout`, and litellm's own retries switched off (`num_retries=0`,
  `max_retries=0`);
- retries rate limits (429), timeouts, connection errors, 5xx and malformed responses with
  exponential back-off and full jitter, waiting at least what a Retry-After header asks;
  client errors (401, 403, 404, 400, missing credentials) fail at once;
- runs each attempt in a daemon thread and stops waiting for it after `timeout_s` plus a
  small grace, so a server that keeps a response open forever (trickling bytes defeats the
  HTTP client's read timeout) cannot hang a campaign; the whole call is bounded by
  `deadline_s`. An abandoned attempt's connection is left to die on its own and no longer
  counts against `concurrency`;
- never raises for provider faults: after the last attempt it returns
  `Proposal(text="", error="<model>: <cause> ...", attempts=N)`.

Cost: the explicit per-million-token prices when given (they describe the deployment you
actually pay for), else litellm's price for the model (response cost or `completion_cost`),
else 0.0.

The API key is never logged, never put into a Proposal, an error text or `describe()`.
litellm is imported lazily (it is slow to import), with `LITELLM_LOCAL_MODEL_COST_MAP=True`
so that importing it fetches nothing.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import logging
import math
import os
import random
import re
import threading
import time
from typing import Any, Callable, Mapping

from discovery.proposers.base import Proposal
from discovery.strategy import Move, seed_for

__all__ = ["LiteLLMProposer", "ProposerUnreachable"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 409, 425, 429})
# Parameters the proposer owns; extra_params may not override them.
_RESERVED = frozenset({
    "model", "messages", "api_base", "base_url", "api_key", "timeout", "num_retries",
    "max_retries", "stream", "seed", "drop_params", "mock_response",
})
# litellm's message prefixes, e.g. "litellm.RateLimitError: RateLimitError: OpenAIException - ".
_PREFIX = re.compile(r"^\s*litellm\.\w+:\s*(\w+:\s*)?(\w+Exception\s*-\s*)?")
_SECRET_NAME = re.compile(r"(api_?key|secret|password|passwd|token$|auth|credential|cookie)", re.I)
# Environment variable holding each provider's key, where it is not PROVIDER_API_KEY.
_KEY_ENV = {
    "together_ai": "TOGETHERAI_API_KEY",
    "azure": "AZURE_API_KEY",
    "bedrock": "AWS_ACCESS_KEY_ID",
    "vertex_ai": "GOOGLE_APPLICATION_CREDENTIALS",
    "ollama": None,
    "ollama_chat": None,
}

_litellm_lock = threading.Lock()
_litellm_mod: Any = None


def _litellm() -> Any:
    """Imports litellm once, offline and quiet."""
    global _litellm_mod
    if _litellm_mod is not None:
        return _litellm_mod
    with _litellm_lock:
        if _litellm_mod is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_LOG", "ERROR")
            import litellm  # noqa: PLC0415 - deliberately lazy

            litellm.suppress_debug_info = True
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                logging.getLogger(name).setLevel(logging.ERROR)
            _litellm_mod = litellm
    return _litellm_mod


class ProposerUnreachable(RuntimeError):
    """The model cannot be reached or rejects us (raised by `LiteLLMProposer.preflight`)."""


class _HardTimeout(Exception):
    """An attempt produced no complete response within its hard cap."""


class _Failure:
    """A classified attempt failure."""

    __slots__ = ("retryable", "cause", "retry_after", "status")

    def __init__(self, retryable: bool, cause: str, retry_after: float | None = None,
                 status: int | None = None) -> None:
        self.retryable = retryable
        self.cause = cause
        self.retry_after = retry_after
        self.status = status


class LiteLLMProposer:
    """A Proposer backed by litellm (see the module docstring).

    Args:
      model: litellm model string, e.g. "openai/gpt-4o-mini" or "hosted_vllm/Qwen/Qwen2.5-7B".
      api_base: server base URL (e.g. "http://127.0.0.1:8000/v1"); None = provider default.
      api_key: key for the provider; None = litellm reads the provider's env var.
      temperature / max_tokens: sampling settings sent with every call.
      timeout_s: time allowed for one attempt (HTTP timeout, and hard cap plus a small grace).
      max_retries: retries after the first attempt (attempts = max_retries + 1).
      backoff_base_s / backoff_max_s: exponential back-off with full jitter between attempts.
      concurrency: calls of this instance in flight at once.
      input_cost_per_mtok / output_cost_per_mtok: USD per million prompt / completion tokens,
        overriding litellm's price table.
      extra_params: more litellm.completion keyword arguments (top_p, stop, extra_headers, ...).
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.8,
        max_tokens: int = 4096,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        concurrency: int = 4,
        input_cost_per_mtok: float | None = None,
        output_cost_per_mtok: float | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ValueError("model must be a litellm model string such as 'openai/gpt-4o-mini'")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if backoff_base_s < 0 or backoff_max_s < 0:
            raise ValueError("back-off times must be >= 0")
        clash = sorted(_RESERVED.intersection(extra_params or {}))
        if clash:
            raise ValueError(f"extra_params may not set {', '.join(clash)}; use the arguments")
        self.model = model.strip()
        self.name = self.model
        self.api_base = api_base or None
        self._api_key = api_key or None
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.concurrency = int(concurrency)
        self.input_cost_per_mtok = input_cost_per_mtok
        self.output_cost_per_mtok = output_cost_per_mtok
        self.extra_params = dict(extra_params or {})
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._rng = random.Random()
        self._sleep: Callable[[float], None] = time.sleep

    # -- settings ------------------------------------------------------------------------

    @property
    def attempt_cap_s(self) -> float:
        """Hard cap on one attempt: timeout_s plus a grace for the HTTP client to give up itself."""
        return self.timeout_s + 1.0 + 0.1 * self.timeout_s

    @property
    def deadline_s(self) -> float:
        """Hard cap on one propose() once it holds a slot: every attempt and every back-off."""
        return (self.max_retries + 1) * self.attempt_cap_s + self.max_retries * self.backoff_max_s

    def describe(self) -> dict[str, Any]:
        """The non-secret settings (for the campaign config); the key only as api_key_set."""
        return {
            "proposer": "litellm",
            "model": self.model,
            "api_base": self.api_base,
            "api_key_set": self._api_key is not None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "backoff_base_s": self.backoff_base_s,
            "backoff_max_s": self.backoff_max_s,
            "concurrency": self.concurrency,
            "input_cost_per_mtok": self.input_cost_per_mtok,
            "output_cost_per_mtok": self.output_cost_per_mtok,
            "extra_params": _redact(self.extra_params),
        }

    def __repr__(self) -> str:
        return f"LiteLLMProposer(model={self.model!r}, api_base={self.api_base!r})"

    # -- the Proposer interface ------------------------------------------------------------

    def propose(self, move: Move, sample: int) -> Proposal:
        """One completion for sample `sample` of `move`; provider faults become Proposal.error."""
        messages = [dict(m) for m in move.messages]
        seed = seed_for(move.seed, sample) % (2**31 - 1)
        return self._call(messages, seed=seed, max_tokens=self.max_tokens)

    def preflight(self) -> Proposal:
        """Sends a 1-token request; raises ProposerUnreachable if it cannot be reached or authed.

        A rate limit (429) or a rejected request body (400, 422) proves the server answered and
        accepted the credentials, so they do not raise. Returns the probe's Proposal.
        """
        probe = LiteLLMProposer(
            self.model, api_base=self.api_base, api_key=self._api_key, temperature=0.0,
            max_tokens=1, timeout_s=min(self.timeout_s, 30.0), max_retries=0, concurrency=1,
            input_cost_per_mtok=self.input_cost_per_mtok,
            output_cost_per_mtok=self.output_cost_per_mtok, extra_params=self.extra_params)
        failures: list[_Failure] = []
        result = probe._call([{"role": "user", "content": "Reply with OK."}], seed=None,
                             max_tokens=1, failures=failures)
        status = failures[-1].status if failures else None
        if result.ok or status in (400, 422, 429):
            return result  # it answered, and accepted our credentials
        cause = failures[-1].cause if failures else result.error
        where = self.api_base or "the provider's default endpoint"
        key_env = self._key_env()
        fix = "check --api-base and DISCOVERY_MODEL"
        fix += f" and {key_env}" if key_env else ""
        verb = "rejected the request" if status in (401, 403) else "is unreachable"
        raise ProposerUnreachable(_one_line(
            f"model {self.model} at {where} {verb}: {cause}; {fix}", self._api_key, 400))

    # -- internals ---------------------------------------------------------------------------

    def _call(self, messages: list[dict], *, seed: int | None, max_tokens: int,
              failures: list[_Failure] | None = None) -> Proposal:
        failures = [] if failures is None else failures
        with self._slots:
            start = time.monotonic()
            deadline = start + self.deadline_s
            attempts = 0
            max_attempts = self.max_retries + 1
            while True:
                attempts += 1
                remaining = deadline - time.monotonic()
                try:
                    response = self._attempt(messages, seed, max_tokens, remaining)
                except Exception as exc:  # noqa: BLE001 - classified below, never raised
                    failure = self._classify(exc)
                    failures.append(failure)
                    wait = self._backoff(attempts, failure.retry_after)
                    left = deadline - time.monotonic()
                    give_up = (not failure.retryable or attempts >= max_attempts
                               or wait + min(1.0, self.attempt_cap_s) > left)
                    if give_up:
                        tail = "" if not failure.retryable else (
                            f" (gave up after {attempts} attempt{'s' if attempts > 1 else ''})")
                        return Proposal(
                            text="", model=self.model, latency_s=time.monotonic() - start,
                            attempts=attempts,
                            error=_one_line(f"{self.model}: {failure.cause}{tail}",
                                            self._api_key))
                    log.info("%s: attempt %d failed (%s); retrying in %.2fs", self.model,
                             attempts, _one_line(failure.cause, self._api_key, 160), wait)
                    self._sleep(wait)
                    continue
                return self._proposal(response, attempts, time.monotonic() - start)

    def _attempt(self, messages: list[dict], seed: int | None, max_tokens: int,
                 remaining_s: float) -> Any:
        """One HTTP attempt in a daemon thread, abandoned after its hard cap."""
        litellm = _litellm()
        timeout = max(0.05, min(self.timeout_s, remaining_s))
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": max_tokens,
            "timeout": timeout,
            "num_retries": 0,
            "max_retries": 0,
            "drop_params": True,
        }
        if seed is not None:
            kwargs["seed"] = seed
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        kwargs.update(self.extra_params)
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(litellm.completion(**kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        threading.Thread(target=run, name=f"litellm-{self.model}", daemon=True).start()
        cap = min(timeout + 1.0 + 0.1 * timeout, max(remaining_s, 0.05) + 1.0)
        try:
            return future.result(timeout=cap)
        except concurrent.futures.TimeoutError:
            raise _HardTimeout(f"no complete response within {cap:.1f}s") from None

    def _classify(self, exc: BaseException) -> _Failure:
        if isinstance(exc, _HardTimeout):
            return _Failure(True, f"timed out: {exc}", status=408)
        try:
            litellm = _litellm()
            import openai  # noqa: PLC0415 - litellm depends on it, already imported
        except Exception as imp:  # noqa: BLE001 - litellm missing or broken
            return _Failure(False, f"{type(exc).__name__}: {exc} (litellm unavailable: {imp})")

        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
        msg = _one_line(_PREFIX.sub("", str(exc)), self._api_key, 200)
        low = msg.lower()
        if "missing credentials" in low or "api_key client option must be set" in low:
            return _Failure(False, f"no API key ({msg})", status=401)
        if isinstance(exc, openai.APITimeoutError):
            return _Failure(True, f"timed out after {self.timeout_s:g}s ({msg})", status=408)
        if isinstance(exc, openai.APIConnectionError):
            return _Failure(True, f"connection error ({msg})")
        if isinstance(exc, litellm.AuthenticationError) or status == 401:
            return _Failure(False, f"authentication failed (HTTP 401): {msg}", status=401)
        if isinstance(exc, litellm.PermissionDeniedError) or status == 403:
            return _Failure(False, f"permission denied (HTTP 403): {msg}", status=403)
        if isinstance(exc, litellm.NotFoundError) or status == 404:
            return _Failure(False, f"not found (HTTP 404), check the model name and api_base: "
                                   f"{msg}", status=404)
        if isinstance(exc, litellm.RateLimitError) or status == 429:
            return _Failure(True, f"rate limited (HTTP 429): {msg}", _retry_after(exc), 429)
        if status is not None and (status >= 500 or status in _RETRY_STATUSES):
            kind = "connection error" if "connection" in low or "disconnected" in low else \
                "server error"
            return _Failure(True, f"{kind} (HTTP {status}): {msg}", _retry_after(exc), status)
        if status is not None and 400 <= status < 500:
            return _Failure(False, f"request rejected (HTTP {status}): {msg}", status=status)
        if isinstance(exc, (openai.APIError, litellm.APIError)):
            # e.g. a 200 whose body is not valid JSON: a transient server fault.
            return _Failure(True, f"invalid response: {msg}", status=status)
        try:
            import httpx  # noqa: PLC0415
        except ImportError:  # pragma: no cover - litellm requires httpx
            httpx = None
        if httpx is not None and isinstance(exc, httpx.TransportError):
            return _Failure(True, f"connection error ({type(exc).__name__}: {msg})")
        return _Failure(False, f"{type(exc).__name__}: {msg}")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential back-off after `attempt` failures; at least Retry-After."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        wait = self._rng.uniform(0.0, ceiling) if ceiling > 0 else 0.0
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def _proposal(self, response: Any, attempts: int, latency_s: float) -> Proposal:
        text, finish = "", ""
        choices = getattr(response, "choices", None) or []
        if choices:
            choice = choices[0]
            message = getattr(choice, "message", None)
            content = getattr(message, "content", None) if message is not None else None
            text = content if isinstance(content, str) else ""
            finish = str(getattr(choice, "finish_reason", "") or "")
        usage = getattr(response, "usage", None)
        prompt_tokens = _int(getattr(usage, "prompt_tokens", 0))
        completion_tokens = _int(getattr(usage, "completion_tokens", 0))
        return Proposal(
            text=text, model=self.model, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self._cost(response, prompt_tokens, completion_tokens),
            latency_s=latency_s, attempts=attempts, finish_reason=finish)

    def _cost(self, response: Any, prompt_tokens: int, completion_tokens: int) -> float:
        if self.input_cost_per_mtok is not None or self.output_cost_per_mtok is not None:
            return (prompt_tokens * (self.input_cost_per_mtok or 0.0)
                    + completion_tokens * (self.output_cost_per_mtok or 0.0)) / 1e6
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
        if _finite(cost):
            return float(cost)
        try:
            cost = _litellm().completion_cost(completion_response=response)
        except Exception:  # noqa: BLE001 - an unpriced model costs 0.0 here
            return 0.0
        return float(cost) if _finite(cost) else 0.0

    def _key_env(self) -> str | None:
        provider = self.model.split("/", 1)[0] if "/" in self.model else ""
        try:
            provider = _litellm().get_llm_provider(self.model)[1] or provider
        except Exception:  # noqa: BLE001 - unknown provider: fall back on the prefix
            pass
        provider = provider or "openai"
        if provider in _KEY_ENV:
            return _KEY_ENV[provider]
        return f"{provider.upper()}_API_KEY"


def _retry_after(exc: BaseException) -> float | None:
    """Seconds asked for by a Retry-After (or retry-after-ms) header on the error, if any."""
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        if not headers:
            continue
        try:
            ms = headers.get("retry-after-ms")
            if ms is not None:
                return max(0.0, float(ms) / 1000.0)
            value = headers.get("retry-after")
        except Exception:  # noqa: BLE001 - odd header containers
            continue
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


def _one_line(text: str, secret: str | None = None, limit: int = 300) -> str:
    """Whitespace collapsed, the secret masked, cut to `limit` characters."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _redact(value: Any, name: str = "") -> Any:
    if name and _SECRET_NAME.search(name):
        return "***"
    if isinstance(value, Mapping):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and value >= 0
