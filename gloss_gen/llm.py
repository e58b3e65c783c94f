"""The ``vgloss`` description method: prompts grounded in WordNet, an OpenAI-compatible LLM call
with a testable retry policy, and defensive parsing of what comes back.

For each class the prompt gives the synset's lemmas, definition and two levels of hypernyms, plus
up to K *confusable* classes of the same class set (nearest by Wu-Palmer similarity, by name
similarity for classes WordNet does not know) with their definitions, and asks for N short visual
phrases that tell the class apart from them. The phrases are embedded in DCLIP's form
``"a photo of a {class}, which is/has {phrase}"`` (:func:`gloss_gen.prompts.dclip_prompt`), so the
prompt asks for noun phrases that read after "which has"/"which is", and every phrase is cut on a
word boundary until that full prompt fits CLIP's 77-token context.

The job around this (concurrency, resume, error lines) lives in :mod:`gloss_gen.describe`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from . import wordnet
from .classsets import ClassSet, ClassSpec
from .errors import ConfigError, VglossError
from .prompts import dclip_prompt

if TYPE_CHECKING:  # pragma: no cover
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

PROMPT_VERSION = "vgloss-v1"
DEFAULT_N_DESCRIPTIONS = 5
DEFAULT_K_CONFUSABLES = 5
HYPERNYM_LEVELS = 2
CLIP_CONTEXT_LENGTH = 77  # tokens, start and end of text included
MAX_DESCRIPTION_CHARS = 300
# Sent when OPENAI_BASE_URL points at a local server that needs no key; the openai client
# refuses to start without one.
PLACEHOLDER_API_KEY = "vgloss-local-endpoint"

SYSTEM_PROMPT = (
    "You write short visual descriptions of object classes for a zero-shot image classifier "
    "(CLIP). Describe only what a camera can see: shape, parts, colours, patterns, texture, "
    "size and typical surroundings. Answer with a JSON array of strings and nothing else."
)


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


# --------------------------------------------------------------------------- class facts


@dataclass(frozen=True)
class ClassFacts:
    """What the prompt says about one class."""

    name: str
    synset: str | None = None
    lemmas: tuple[str, ...] = ()
    definition: str | None = None
    hypernyms: tuple[str, ...] = ()  # nearest first


def _synset_of(spec: ClassSpec):
    if not spec.synset:
        return None
    try:
        return wordnet.get_synset(spec.synset)
    except KeyError:
        log.warning("class %r names unknown synset %r; describing it by name only", spec.name, spec.synset)
        return None


def class_facts(spec: ClassSpec, synset=None) -> ClassFacts:
    synset = synset if synset is not None else _synset_of(spec)
    if synset is None:
        return ClassFacts(name=spec.name)
    return ClassFacts(
        name=spec.name,
        synset=spec.synset,
        lemmas=tuple(dict.fromkeys(lemma.replace("_", " ") for lemma in synset.lemma_names())),
        definition=synset.definition(),
        hypernyms=tuple(wordnet.display_name(h) for h in wordnet.hypernym_chain(synset, HYPERNYM_LEVELS)),
    )


# --------------------------------------------------------------------------- confusables


class WuPalmer:
    """Wu-Palmer similarity with exactly the numbers of :func:`gloss_gen.wordnet.similarity`
    (NLTK's ``wup_similarity``), computed from per-synset ancestor tables kept across pairs.

    NLTK rebuilds those tables on every call (~240 µs a pair: two minutes for the 500k pairs of
    ImageNet-1k); cached, a pair is a set intersection and two dictionary look-ups. Noun pairs
    only (the noun taxonomy has one root); anything else goes to ``wordnet.similarity``.
    """

    def __init__(self) -> None:
        self._ancestors: dict[Any, dict[Any, int]] = {}
        self._distances: dict[tuple[Any, Any], int] = {}

    def ancestors(self, synset) -> dict[Any, int]:
        """The synset and all its (instance) hypernyms, each with its shortest distance upwards."""
        table = self._ancestors.get(synset)
        if table is None:
            table = {}
            frontier, depth = [synset], 0
            while frontier:
                nxt = []
                for s in frontier:
                    if s not in table:
                        table[s] = depth
                        nxt.extend(s.hypernyms())
                        nxt.extend(s.instance_hypernyms())
                frontier, depth = nxt, depth + 1
            self._ancestors[synset] = table
        return table

    def _distance(self, synset, ancestor) -> int:
        # NLTK's shortest_path_distance: the path may go up past the ancestor and down again
        # when multiple inheritance gives a shortcut, so it is a minimum over shared ancestors.
        if synset == ancestor:
            return 0
        key = (synset, ancestor)
        cached = self._distances.get(key)
        if cached is None:
            up = self.ancestors(synset)
            up_anc = self.ancestors(ancestor)
            cached = min(d + up_anc[x] for x, d in up.items() if x in up_anc)
            self._distances[key] = cached
        return cached

    def __call__(self, a, b) -> float:
        if a.pos() != "n" or b.pos() != "n":
            return wordnet.similarity(a, b)
        up_a, up_b = self.ancestors(a), self.ancestors(b)
        common = up_a.keys() & up_b.keys()
        if not common:
            return 0.0
        deepest = max(s.min_depth() for s in common)
        lowest = sorted(s for s in common if s.min_depth() == deepest)
        subsumer = a if a in lowest else lowest[0]
        depth = subsumer.max_depth() + 1
        len_a = self._distance(a, subsumer) + depth
        len_b = self._distance(b, subsumer) + depth
        return 2.0 * depth / (len_a + len_b)


def _trigrams(text: str) -> Counter:
    padded = f"  {re.sub(r'[^a-z0-9]+', ' ', text.lower()).strip()} "
    return Counter(padded[i : i + 3] for i in range(len(padded) - 2))


def name_similarity(a: str, b: str) -> float:
    """Cosine of character-trigram counts: 1.0 for equal names, 0.0 for nothing in common."""
    ga, gb = _trigrams(a), _trigrams(b)
    dot = sum(count * gb[g] for g, count in ga.items())
    if not dot:
        return 0.0
    return dot / math.sqrt(sum(v * v for v in ga.values()) * sum(v * v for v in gb.values()))


def wu_palmer_matrix(synsets: Sequence[Any]) -> np.ndarray:
    """(C, C) Wu-Palmer similarities of noun synsets, equal to ``wordnet.similarity(s[i], s[j])``
    for ``i < j`` (mirrored below the diagonal; the diagonal is 1).

    Vectorised over the union of the classes' ancestors: a pair's lowest common subsumer is the
    first shared ancestor in NLTK's order (greatest minimum depth, then smallest name), found by
    visiting ancestors in that order and claiming the still-unclaimed pairs among the classes
    below each. ImageNet-1k takes about a second instead of minutes.
    """
    wup = WuPalmer()
    count = len(synsets)
    node_index: dict[Any, int] = {}
    for synset in synsets:
        for ancestor in wup.ancestors(synset):
            node_index.setdefault(ancestor, len(node_index))
    nodes = list(node_index)
    members: list[list[int]] = [[] for _ in nodes]
    distance = np.zeros((count, len(nodes)), dtype=np.float64)
    for i, synset in enumerate(synsets):
        for ancestor in wup.ancestors(synset):
            members[node_index[ancestor]].append(i)
            distance[i, node_index[ancestor]] = wup._distance(synset, ancestor)

    order = sorted(range(len(nodes)), key=lambda n: (-nodes[n].min_depth(), nodes[n].name()))
    lcs = np.full((count, count), -1, dtype=np.int64)
    for n in order:
        rows = np.asarray(members[n])
        grid = np.ix_(rows, rows)
        block = lcs[grid]
        unclaimed = block < 0
        if unclaimed.any():
            block[unclaimed] = n
            lcs[grid] = block
    if (lcs < 0).any():  # pragma: no cover - every noun descends from entity.n.01
        raise ValueError("synsets without a common ancestor; use WuPalmer for them")

    depth = np.array([node.max_depth() + 1 for node in nodes], dtype=np.float64)[lcs]
    rows, cols = np.indices((count, count))
    scores = 2.0 * depth / (distance[rows, lcs] + distance[cols, lcs] + 2.0 * depth)

    # NLTK prefers the first synset itself as the subsumer when it ties with another ancestor,
    # which makes those (rare) pairs order-dependent: recompute them the scalar way.
    own_node = np.array([node_index[s] for s in synsets])
    for i, j in zip(*np.nonzero((lcs == own_node[:, None]) | (lcs == own_node[None, :]))):
        if i < j:
            scores[i, j] = scores[j, i] = wup(synsets[i], synsets[j])
    return scores.astype(np.float32)


def similarity_matrix(class_set: ClassSet) -> np.ndarray:
    """(C, C) class similarities: Wu-Palmer where both classes have noun synsets, name
    similarity otherwise. The diagonal is 0."""
    synsets = [_synset_of(spec) for spec in class_set.classes]
    names = class_set.names
    count = len(names)
    scores = np.zeros((count, count), dtype=np.float32)
    nouns = [i for i, s in enumerate(synsets) if s is not None and s.pos() == "n"]
    if nouns:
        scores[np.ix_(nouns, nouns)] = wu_palmer_matrix([synsets[i] for i in nouns])
    noun_set = set(nouns)
    wup = WuPalmer()
    for i in (i for i in range(count) if i not in noun_set):
        for j in range(count):
            if j == i or (j not in noun_set and j < i):
                continue  # the diagonal, or a pair already done from j's side
            a, b = (i, j) if i < j else (j, i)
            if synsets[a] is not None and synsets[b] is not None:
                value = wup(synsets[a], synsets[b])
            else:
                value = name_similarity(names[a], names[b])
            scores[a, b] = scores[b, a] = value
    np.fill_diagonal(scores, 0.0)
    return scores


def find_confusables(class_set: ClassSet, k: int = DEFAULT_K_CONFUSABLES) -> list[list[int]]:
    """For each class, the indices of up to ``k`` most similar other classes of the set, most
    similar first (ties: class-set order). Classes with nothing in common are left out."""
    if k <= 0 or len(class_set) < 2:
        return [[] for _ in class_set.classes]
    scores = similarity_matrix(class_set)
    result = []
    for i, row in enumerate(scores):
        row = row.copy()
        row[i] = -1.0
        order = np.argsort(-row, kind="stable")[:k]
        result.append([int(j) for j in order if row[j] > 0])
    return result


# --------------------------------------------------------------------------- prompt


def build_messages(target: ClassFacts, confusables: Sequence[ClassFacts],
                   n: int = DEFAULT_N_DESCRIPTIONS) -> list[dict[str, str]]:
    """The chat messages asking for ``n`` distinguishing visual descriptions of ``target``."""
    name = target.name
    a_name = f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
    lines = [f"Class: {name}"]
    other_lemmas = [lemma for lemma in target.lemmas if lemma.lower() != name.lower()]
    if other_lemmas:
        lines.append(f"Also called: {', '.join(other_lemmas)}")
    if target.definition:
        lines.append(f"Definition: {target.definition}")
    if target.hypernyms:
        lines.append(f"Kind of: {' > '.join(target.hypernyms)}")
    if confusables:
        lines += ["", f"In the same classifier, {a_name} must be told apart from these similar classes:"]
        for other in confusables:
            lines.append(f"- {other.name}: {other.definition}" if other.definition else f"- {other.name}")
    lines += [
        "",
        f"Write {n} short visual descriptions of {a_name} in a photo"
        + (", each naming a feature that distinguishes it from the classes above." if confusables else "."),
        (  # the very sentence the descriptions are embedded in (gloss_gen.prompts.dclip_prompt)
            f'Each one completes the sentence "a photo of a {name}, which has ..." (or "which is '
            '..."), so write noun phrases such as "a long olive-green body" or "small red eyes", or '
            'phrases starting with "has", "often" or "typically". At most 12 words each; do not '
            "repeat the class name or name the other classes."
        ),
        f"Answer with only a JSON array of {n} strings.",
    ]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]


# --------------------------------------------------------------------------- parsing

_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_LIST_LINE_RE = re.compile(r"^\s*(?:[-*•·–]|\(?\d{1,2}[.):])\s+(.+?)\s*$", re.MULTILINE)
_LEADING_MARK_RE = re.compile(r"^\s*(?:[-*•·–]|\(?\d{1,2}[.):])\s+")
_STRING_ITEM_RE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*,')
_PREFERRED_KEYS = ("descriptions", "description", "visual_descriptions", "features", "descriptors",
                   "attributes", "items", "answer", "output", "results", "text", "phrase")
_DANGLING = {"and", "or", "with", "of", "the", "a", "an", "in", "on", "to", "for", "at", "by",
             "its", "their", "that", "which", "from", "as"}
_QUOTES = "\"'`“”‘’"


def _strings_in(value: Any) -> list[str]:
    """The description strings inside a decoded JSON value, however it is nested."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings_in(item)]
    if isinstance(value, dict):
        by_key = {str(k).lower(): v for k, v in value.items()}
        for key in _PREFERRED_KEYS:
            if key in by_key and _strings_in(by_key[key]):
                return _strings_in(by_key[key])
        lists = [v for v in value.values() if isinstance(v, (list, dict))]
        if lists:
            return [s for v in lists for s in _strings_in(v)]
        return [v for v in value.values() if isinstance(v, str)]
    return []


def _json_strings(text: str) -> list[str]:
    decoder = json.JSONDecoder()
    for position, char in enumerate(text):
        if char not in "[{":
            continue
        try:
            value, _ = decoder.raw_decode(text, position)
        except ValueError:
            continue
        strings = _strings_in(value)
        if strings:
            return strings
    return []


def parse_descriptions(text: str | None) -> list[str]:
    """Raw description strings from an LLM answer, in order.

    Accepts a JSON array anywhere in the text (also inside a code fence, or nested in an object
    such as ``{"descriptions": [...]}``), else numbered or bulleted lines, else the complete
    items of a JSON array cut off mid-way. Prose without any of these gives ``[]``.
    """
    if not text or not text.strip():
        return []
    for chunk in [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]:
        strings = _json_strings(chunk)
        if strings:
            return strings
    listed = _LIST_LINE_RE.findall(text)
    if listed:
        return listed
    start = text.find("[")
    if start >= 0:
        salvaged = []
        for literal in _STRING_ITEM_RE.findall(text[start:]):
            try:
                salvaged.append(json.loads(f'"{literal}"'))
            except ValueError:
                continue
        return salvaged
    return []


@lru_cache(maxsize=4096)
def _lead_in(class_name: str) -> re.Pattern[str]:
    """Matches an opening that repeats the subject: "A tench has", "Tenches are", "It is"..."""
    name = re.escape(class_name.replace("_", " ").strip())
    return re.compile(
        rf"^(?:(?:(?:a|an|the)\s+)?{name}(?:e?s)?|it|they|which|that)\s+"
        r"(?=(?:has|have|is|are|often|typically|usually|may|can)\b)",
        re.IGNORECASE,
    )


def clean_description(text: str, class_name: str) -> str:
    """One phrase tidied to read after "which has"/"which is": no list marks, quotes, trailing
    full stop or lead-in that repeats the class ("A tench has ..." → "has ...")."""
    text = " ".join(str(text).split())[:MAX_DESCRIPTION_CHARS]
    text = _LEADING_MARK_RE.sub("", text)
    text = text.replace("**", "").strip(_QUOTES + " ").rstrip(".;,:!").strip(_QUOTES + " ")
    text = _lead_in(class_name).sub("", text)
    text = re.sub(r"^have\b", "has", text, flags=re.IGNORECASE)
    # "is a large fish" → "a large fish" (DCLIP writes "which is a ..." for an article).
    text = re.sub(r"^(?:is|are)\s+(?=(?:a|an)\s)", "", text, flags=re.IGNORECASE)
    first, _, rest = text.partition(" ")
    if not (len(first) > 1 and first[:2].isupper()):  # keep acronyms ("UV-reflective")
        first = first.lower()
    text = f"{first} {rest}".strip() if rest else first
    if text.lower() == class_name.lower():
        return ""
    return text


@lru_cache(maxsize=1)
def _clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=CLIP_CONTEXT_LENGTH)


def clip_token_count(text: str) -> int:
    """Tokens CLIP's BPE tokenizer gives ``text``, start and end of text included."""
    return len(_clip_tokenizer().encode(text)) + 2


def fit_clip_context(class_name: str, description: str,
                     context_length: int = CLIP_CONTEXT_LENGTH) -> str:
    """``description``, cut on a word boundary so ``dclip_prompt(class_name, description)`` fits
    ``context_length`` tokens; ``""`` when not even one word fits."""
    if clip_token_count(dclip_prompt(class_name, description)) <= context_length:
        return description
    words = description.split()

    def prefix(k: int) -> str:
        kept = words[:k]
        while kept and kept[-1].lower().strip(",;:-") in _DANGLING:
            kept.pop()
        return " ".join(kept).rstrip(",;:-")

    low, high = 0, len(words) - 1  # the longest fitting prefix length lies in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        candidate = prefix(mid)
        if candidate and clip_token_count(dclip_prompt(class_name, candidate)) <= context_length:
            low = mid
        else:
            high = mid - 1
    return prefix(low)


def _dedupe_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def extract_descriptions(text: str | None, class_name: str, n: int | None = None) -> list[str]:
    """Parsed, cleaned, 77-token-capped, case-insensitively de-duplicated descriptions (at most
    ``n``) from an LLM answer."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in parse_descriptions(text):
        cleaned = clean_description(raw, class_name)
        fitted = fit_clip_context(class_name, cleaned) if cleaned else ""
        key = _dedupe_key(fitted)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(fitted)
        if n is not None and len(out) >= n:
            break
    return out


# --------------------------------------------------------------------------- retries


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


RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


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
    descriptions: list[str]
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
    policy: RetryPolicy = RetryPolicy(),
    temperature: float | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> LLMAnswer:
    """Ask for descriptions, retrying 429/408/409/5xx, timeouts, connection errors and answers
    with nothing usable in them. Raises :class:`LLMError` once retries are spent, or at once for
    a request the endpoint rejects (400, 401, 403, 404...)."""
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
            if not is_retryable_status(exc.status_code):
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
            descriptions = extract_descriptions(content, class_name, n)
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
        log.debug("%s: %s; retry %d in %.2fs", class_name, reason, attempt + 1, delay)
        await sleep(delay)
    raise LLMError(f"{reason} (gave up after {attempts} attempts)", attempts)
