"""Test helpers that ship with the package, so tests, benchmarks and other processes share them.

:mod:`gloss_gen.testing.llm_stub` is a local OpenAI-protocol chat-completions server for offline
tests of the ``vgloss`` description method.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LLMStub", "StubRequest"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m gloss_gen.testing.llm_stub` does not import the module twice.
    if name in __all__:
        from gloss_gen.testing import llm_stub

        return getattr(llm_stub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
