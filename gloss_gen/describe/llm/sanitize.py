"""What an LLM answer may put into a description set: bounded, linear-time, visual phrases only.

An LLM endpoint is outside input. Its answer is cut to :data:`MAX_ANSWER_CHARS` before parsing,
JSON inside it is found in one pass (:func:`json_values`, never a decode attempt per bracket),
and every description is :func:`sanitize_description`-ed: markup, links and control or
invisible characters removed; text that talks to the model or the user rather than describing
how something looks ("ignore previous instructions", "as an AI", "system prompt", code) dropped.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

MAX_ANSWER_CHARS = 64 * 1024
"""Longest answer parsed; five 300-character descriptions in JSON take about 2 kB."""
MAX_JSON_DEPTH_TRIED = 3
"""Bracket spans nested deeper than this are not tried on their own (keeps the scan linear)."""

_SCRIPT_BLOCK = re.compile(r"<(script|style|iframe|object|embed)\b[^>]{0,500}>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z!?][^<>]{0,500}>")
_MD_LINK = re.compile(r"!?\[([^\[\]]{0,300})\]\([^()\s]{0,500}\)")
_URL = re.compile(r"\b(?:https?|ftp|file|javascript|data):\S*", re.IGNORECASE)
_MD_MARKS = re.compile(r"(\*\*|__|~~|`+)")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[A-Za-z]{2,10});")

_NOT_VISUAL = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,60}?\b(?:previous|prior|above|earlier|all|any|the|your)\b"
    r".{0,40}?\b(?:instructions?|prompts?|rules|directions|messages?|context)\b"
    r"|\b(?:system|developer)\s+(?:prompt|message|mode)\b"
    r"|\bprompt\s+injection\b|\bjailbreak"
    r"|\bas an (?:ai|a\.i\.|language model|llm|assistant)\b"
    r"|\b(?:i am|i'm) (?:an? )?(?:ai|language model|assistant|chatbot)\b"
    r"|\byou are (?:now )?(?:an? |the )?(?:ai|assistant|chatgpt|dan|model)\b"
    r"|\b(?:new|updated) instructions?\b"
    r"|^(?:system|assistant|user)\s*:"
    r"|\b(?:sorry|apologi[sz]e|cannot help|can't help|i can(?:no|')t)\b",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"[{}<>$\\|]|;\s*[\w.]+\s*\(|\b\w+\.\w+\(|\b(?:eval|exec|import|function|return|select|insert|drop)\s*\("
    r"|^\s*(?:import|def|var|const)\s+\w|\brm\s+-rf\b|&&|=>|==|:="
)


def bounded(text: str | None) -> str:
    """``text`` cut to :data:`MAX_ANSWER_CHARS` (an answer longer than that is not a real one)."""
    return (text or "")[:MAX_ANSWER_CHARS]


def json_values(text: str) -> Iterator[Any]:
    """The JSON arrays and objects in ``text``, outermost first, found in one linear pass.

    One scan pairs the brackets (skipping those inside strings); only balanced spans at most
    :data:`MAX_JSON_DEPTH_TRIED` deep are decoded, each once, so a hostile ``[ x [ x ...``
    answer costs O(n), not a decode attempt (and an O(n) error message) per bracket.
    """
    spans: list[tuple[int, int, int]] = []  # (depth, start, end)
    stack: list[tuple[str, int]] = []
    in_string = escaped = False
    closers = {"[": "]", "{": "}"}
    for position, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"' and stack:
            in_string = True
        elif char in closers:
            stack.append((closers[char], position))
        elif stack and char == stack[-1][0]:
            _, start = stack.pop()
            if len(stack) < MAX_JSON_DEPTH_TRIED:
                spans.append((len(stack), start, position + 1))
        elif char in "]}":
            stack.clear()  # a stray closer: what was open cannot be JSON
    for _, start, end in sorted(spans, key=lambda span: (span[1], span[0])):
        try:
            yield json.loads(text[start:end])
        except (ValueError, RecursionError):
            continue


def sanitize_description(text: str) -> str:
    """``text`` without markup, links, entities or control/invisible characters; ``""`` when what
    is left is not a visual phrase (instructions to a model, apologies, code, an essay)."""
    text = unicodedata.normalize("NFKC", str(text))
    text = _SCRIPT_BLOCK.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    if _URL.search(text):
        return ""  # a link is not something a picture shows
    text = _ENTITY.sub(" ", text)
    text = _MD_MARKS.sub("", text)
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in text
        if unicodedata.category(ch) not in ("Cf", "Co", "Cs", "Cn")
    )
    text = " ".join(text.split())
    if not is_visual_phrase(text):
        return ""
    return text


def is_visual_phrase(text: str) -> bool:
    """A descriptive phrase: it has letters, is not a question, not code, not words addressed to a
    model or a user. (Length is not judged here: descriptions are cut to CLIP's context later.)"""
    if not text or not any(ch.isalpha() for ch in text) or text.rstrip().endswith("?"):
        return False
    return not _NOT_VISUAL.search(text) and not _CODE.search(text)
