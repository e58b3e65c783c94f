"""Defensive parsing of an LLM answer into descriptions: JSON anywhere, fenced or nested, else
list lines, else a cut-off array's complete items; each phrase tidied and cut on a word boundary
until its DCLIP prompt fits CLIP's 77-token context."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from gloss_gen.core.prompts import build_prompts
from gloss_gen.data.descriptions import VGLOSS_STYLES
from gloss_gen.describe.llm.sanitize import bounded, json_values, sanitize_description

CLIP_CONTEXT_LENGTH = 77  # tokens, start and end of text included
MAX_DESCRIPTION_CHARS = 300

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
    for value in json_values(text):  # one linear scan; hostile answers cannot make it quadratic
        try:
            strings = _strings_in(value)
        except RecursionError:
            continue
        if strings:
            return strings
    return []


def parse_descriptions(text: str | None) -> list[str]:
    """Raw description strings from an LLM answer, in order.

    Accepts a JSON array anywhere in the text (also inside a code fence, or nested in an object
    such as ``{"descriptions": [...]}``), else numbered or bulleted lines, else the complete
    items of a JSON array cut off mid-way. Prose without any of these gives ``[]``.
    """
    text = bounded(text)
    if not text.strip():
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


def clean_description(text: str, class_name: str, style: str = "phrases") -> str:
    """One text tidied to read after "which" (``phrases``) or "which is" (``gloss``): no list
    marks, quotes, trailing full stop or lead-in that repeats the class ("A tench has ..." →
    "has ...")."""
    text = " ".join(str(text).split())[:MAX_DESCRIPTION_CHARS]
    text = _LEADING_MARK_RE.sub("", text)
    text = text.replace("**", "").strip(_QUOTES + " ").rstrip(".;,:!").strip(_QUOTES + " ")
    text = _lead_in(class_name).sub("", text)
    text = re.sub(r"^have\b", "has", text, flags=re.IGNORECASE)
    if style == "gloss":  # "is a male bird ..." → "a male bird ..." (embedded after "which is")
        text = re.sub(r"^(?:is|are)\s+", "", text, flags=re.IGNORECASE)
    else:
        text = re.sub(r"^are\b", "is", text, flags=re.IGNORECASE)
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
                     context_length: int = CLIP_CONTEXT_LENGTH, style: str = "phrases",
                     prompt_of: Callable[[str, str], str] | None = None) -> str:
    """``description``, cut on a word boundary so its prompt in the style's prompt form (or the
    sentence ``prompt_of(class_name, description)`` makes) fits ``context_length`` tokens; ``""``
    when not even one word fits."""
    if prompt_of is None:
        prompt_style = VGLOSS_STYLES[style]

        def prompt_of(name: str, text: str) -> str:
            return build_prompts(name, [text], prompt_style)[0]

    if clip_token_count(prompt_of(class_name, description)) <= context_length:
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
        if candidate and clip_token_count(prompt_of(class_name, candidate)) <= context_length:
            low = mid
        else:
            high = mid - 1
    return prefix(low)


def _dedupe_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def extract_descriptions(text: str | None, class_name: str, n: int | None = None,
                         style: str = "phrases") -> list[str]:
    """Parsed, cleaned, 77-token-capped, case-insensitively de-duplicated descriptions (at most
    ``n``) from an LLM answer."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in parse_descriptions(text):
        cleaned = clean_description(sanitize_description(raw), class_name, style)
        fitted = fit_clip_context(class_name, cleaned, style=style) if cleaned else ""
        key = _dedupe_key(fitted)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(fitted)
        if n is not None and len(out) >= n:
            break
    return out

