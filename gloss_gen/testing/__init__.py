"""Test helpers that ship with the package, so tests, benchmarks and other processes share them.

:mod:`gloss_gen.testing.llm_stub` is a local OpenAI-protocol chat-completions server for offline
tests of the ``vgloss`` description method.
"""

from .llm_stub import LLMStub, StubRequest

__all__ = ["LLMStub", "StubRequest"]
