"""The LLM call: an OpenAI-compatible client without its own retries, and the one retry policy
(exponential backoff with full jitter, ``Retry-After`` obeyed up to a cap) around each request."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from gloss_gen.core.errors import ConfigError, VglossError
from gloss_gen.describe.llm.parsing import extract_descriptions
from gloss_gen.describe.llm.prompt import DEFAULT_N_DESCRIPTIONS

if TYPE_CHECKING:  # pragma: no cover
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

# Sent when OPENAI_BASE_URL points at a local server that needs no key; the openai client
# refuses to start without one.
PLACEHOLDER_API_KEY = "vgloss-local-endpoint"


class LLMConfigError(ConfigError):
    """The LLM client cannot be set up (no API key, bad endpoint); the message names the fix."""

    code = "llm_not_configured"


class LLMError(VglossError):
    """A class the LLM could not describe, after every retry. ``reason`` is one line."""

    code = "llm_failed"

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts



@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's ``Retry-After`` wins when present."""

    max_retries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is capped, not obeyed for hours

    def delay(self, retry_number: int, retry_after: float | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry)."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** retry_number))
        return (rng or random).uniform(0.0, ceiling)


_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def _retryable_status(status: int) -> bool:
    return status in _RETRYABLE_STATUS or status >= 500


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (milliseconds) or ``Retry-After`` (seconds or an
    HTTP date); ``None`` when absent or unreadable."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v).strip() for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            value = float(lowered["retry-after-ms"]) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --------------------------------------------------------------------------- the LLM call


def make_client(*, base_url: str | None = None, api_key: str | None = None,
                timeout: float = 60.0) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` client for any OpenAI-compatible endpoint, without the client's own
    retries (``request_descriptions`` retries, so the policy is one place and testable).

    ``base_url``/``api_key`` default to ``OPENAI_BASE_URL``/``OPENAI_API_KEY``; a custom endpoint
    without a key gets a placeholder one (local servers ignore it).
    """
    from openai import AsyncOpenAI

    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if not api_key:
        if not base_url:
            raise LLMConfigError(
                "OPENAI_API_KEY is not set: set it to use api.openai.com, or set OPENAI_BASE_URL to "
                "a local OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1)"
            )
        api_key = PLACEHOLDER_API_KEY
    return AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def endpoint_label(client: Any) -> str:
    """Scheme, host and path of the client's endpoint (never credentials), for provenance."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(getattr(client, "base_url", "")))
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


@dataclass
class LLMAnswer:
    descriptions: list  # what the parser gave: texts (vgloss) or contrasts (fudd)
    attempts: int
    response_model: str | None
    elapsed_s: float


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def request_descriptions(
    client: AsyncOpenAI,
    *,
    model: str,
    messages: list[dict[str, str]],
    class_name: str,
    n: int = DEFAULT_N_DESCRIPTIONS,
    style: str = "phrases",
    policy: RetryPolicy = RetryPolicy(),
    temperature: float | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> LLMAnswer:
    """Ask for descriptions, retrying 429/408/409/5xx, timeouts, connection errors and answers
    with nothing usable in them. Raises :class:`LLMError` once retries are spent, or at once for
    a request the endpoint rejects (400, 401, 403, 404...)."""
    return await request_parsed(
        client, model=model, messages=messages, label=class_name,
        parse=functools.partial(extract_descriptions, class_name=class_name, n=n, style=style),
        policy=policy, temperature=temperature, rng=rng, sleep=sleep,
    )


async def request_parsed(
    client: AsyncOpenAI,
    *,
    model: str,
    messages: list[dict[str, str]],
    label: str,
    parse: Callable[[str], list],
    policy: RetryPolicy = RetryPolicy(),
    temperature: float | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> LLMAnswer:
    """One chat request under ``policy``, its answer put through ``parse`` (an empty list: nothing
    usable, retried like a 5xx). The retry loop of every LLM method (vgloss descriptions, FuDD
    pairs); ``label`` names the class or pair in log lines."""
    import openai

    started = time.monotonic()
    extra: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    attempts = policy.max_retries + 1
    reason = "no attempt made"
    for attempt in range(attempts):
        last = attempt == attempts - 1
        retry_after: float | None = None
        try:
            response = await client.chat.completions.create(model=model, messages=messages, **extra)
        except openai.APIStatusError as exc:
            reason = f"HTTP {exc.status_code} from the LLM endpoint: {_short(exc)}"
            if not _retryable_status(exc.status_code):
                raise LLMError(reason, attempt + 1) from None
            retry_after = parse_retry_after(exc.response.headers)
        except openai.APITimeoutError:
            reason = "the LLM request timed out"
        except openai.APIConnectionError as exc:
            reason = f"cannot reach the LLM endpoint: {_short(exc.__cause__ or exc)}"
        except openai.APIResponseValidationError as exc:
            reason = f"the LLM endpoint sent an unreadable response: {_short(exc)}"
        else:
            choice = response.choices[0] if response.choices else None
            content = (choice.message.content if choice and choice.message else None) or ""
            cut_off = choice is not None and choice.finish_reason == "length"
            # parsing is CPU work on outside input: off the event loop
            descriptions = await asyncio.to_thread(parse, content)
            if descriptions and (not cut_off or last):
                return LLMAnswer(descriptions, attempt + 1, getattr(response, "model", None),
                                 time.monotonic() - started)
            if descriptions:
                reason = "the LLM's answer was cut off (finish_reason=length)"
            elif not content.strip():
                reason = "the LLM's answer was empty"
            else:
                reason = "the LLM's answer held no usable descriptions: " + _short(content, 80)
        if last:
            break
        delay = policy.delay(attempt, retry_after, rng)
        log.debug("%s: %s; retry %d in %.2fs", label, reason, attempt + 1, delay)
        await sleep(delay)
    raise LLMError(f"{reason} (gave up after {attempts} attempts)", attempts)
