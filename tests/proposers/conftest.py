"""Fixtures for proposer tests: a stub server, a move, and a network guard (loopback only)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from discovery.strategy import Move, Node
from tests.stub_llm import StubLLMServer

_PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "ANTHROPIC_API_KEY",
                 "HOSTED_VLLM_API_KEY", "HOSTED_VLLM_API_BASE", "LITELLM_API_KEY")


def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Tests must never reach a real provider: any non-loopback connection fails loudly."""
    for name in _PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise AssertionError(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _loopback(host if isinstance(host, str) else host.decode()):
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield


@pytest.fixture
def stub():
    with StubLLMServer(contents=None, default_content="def f():\n    return 1\n") as server:
        yield server


def make_move(seed: int = 7, text: str = "Improve the program.") -> Move:
    parent = Node(ref=1, code="def f():\n    return 0\n", score=0.0, status="ok")
    return Move(
        trajectory=0, index=0, mode="propose",
        messages=({"role": "system", "content": "You write Python."},
                  {"role": "user", "content": text}),
        parent=parent, inspirations=(), samples=2, seed=seed)


@pytest.fixture
def move() -> Move:
    return make_move()
