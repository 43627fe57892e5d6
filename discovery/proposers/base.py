"""The Proposer interface: turns a Move into response text in the edit format.

Both the LLM proposer and the offline proposer answer in the same format (a rewritten evolve
block in a fenced code block, or SEARCH/REPLACE edits), so parsing, storage and export are
identical downstream.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from discovery.strategy import Move


@dataclasses.dataclass(frozen=True)
class Proposal:
    """One proposer call.

    Attributes:
      text: the raw response text ("" when the call failed).
      model: the model string that answered ("offline" for the offline proposer).
      prompt_tokens / completion_tokens: token usage reported by the provider (0 if unknown).
      cost_usd: cost of the call in USD (0.0 offline or when unknown).
      latency_s: wall-clock seconds of the call, retries included.
      attempts: how many attempts it took (1 = no retry).
      error: one-line error when the call failed after its retries, else "".
      finish_reason: the provider's finish reason, if any.
    """

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 1
    error: str = ""
    finish_reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


class Proposer(Protocol):
    """Produces candidate programs' response text. Implementations must be thread-safe."""

    name: str  # "offline" or the model string

    def propose(self, move: Move, sample: int) -> Proposal:
        """Returns one response for sample `sample` of `move`; never raises for provider faults."""
