"""Defensive parsing of a FuDD answer into contrasts ``(attribute, first sentence, second sentence)``.

Accepted, in this order: JSON anywhere in the answer (also fenced, or nested under a key such as
``"attributes"``) holding ``{"attribute", "first", "second"}`` objects (or the like: ``class_1`` /
``object1``, the class names as keys, FuDD's own ``{"attr_type", "prompt_pair": [a, b]}``,
``[attribute, a, b]`` triples, or an object of ``attribute: [a, b]``); else lines
``attribute: a | b`` or ``attribute: a vs b``. Each phrase is sanitised exactly as a vgloss
description (:func:`~gloss_gen.describe.llm.sanitize.sanitize_description`: markup, links,
control characters, text addressed to a model dropped), tidied (a full ``a photo of a X, with``
sentence or a ``has``/``with`` lead-in is taken back to its phrase), put in the sentence
:func:`~gloss_gen.describe.llm.pair_prompt.pair_sentence` and cut on a word boundary until that
sentence fits CLIP's 77-token context. A contrast missing a side, whose two sides read the same,
or whose attribute was dropped as hostile is left out.
"""

from __future__ import annotations

import re
from typing import Any

from gloss_gen.describe.llm.pair_prompt import pair_sentence
from gloss_gen.describe.llm.parsing import MAX_DESCRIPTION_CHARS, fit_clip_context
from gloss_gen.describe.llm.sanitize import bounded, json_values, sanitize_description

Contrast = tuple[str, str, str]  # (attribute, text of the first class, text of the second)
RawContrast = tuple[Any, Any, Any]  # attribute (None: not given), first, second

MAX_ATTRIBUTE_WORDS = 6
_ATTRIBUTE_KEYS = ("attribute", "attr_type", "attribute_type", "attr", "feature", "aspect", "trait",
                   "difference", "category", "type", "name")
_FIRST_KEYS = ("first", "class_1", "class1", "first_class", "object_1", "object1", "a", "1", "left")
_SECOND_KEYS = ("second", "class_2", "class2", "second_class", "object_2", "object2", "b", "2", "right")
_BOTH_KEYS = ("prompt_pair", "pair", "values", "descriptions", "phrases", "texts")
_LIST_KEYS = ("attributes", "differences", "contrasts", "prompt_pairs", "pairs", "items", "answer",
              "output", "results")
_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_LINE_RE = re.compile(  # "- ear shape: small, triangular ears | large, rounded ears"
    r"^\s*(?:[-*•·–]|\(?\d{1,2}[.):])?\s*([^:|]{1,80}?)\s*:\s*(.+?)\s*(?:\||\bvs\.?|\bversus)\s*(.+?)\s*$",
    re.IGNORECASE,
)
MAX_LINE_CHARS = 400  # longer lines are not contrast lines (and would make the line pattern slow)
_LEADING_MARK_RE = re.compile(r"^\s*(?:[-*•·–]|\(?\d{1,2}[.):])\s+")
_PHOTO_OF_RE = re.compile(r"^(?:(?:a|an|the)\s+)?(?:photo|picture|image)\s+of\s+(?:(?:a|an|the)\s+)?", re.IGNORECASE)
_LEAD_RE = re.compile(r"^(?:(?:it|they|which|that)\s+)?(?:has|have|having|with)\s+", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"


def _norm_key(key: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(key).lower()).strip("_")


def _side(value: Any) -> Any:
    return value if isinstance(value, str) else None


def _from_object(item: dict, names: tuple[str, str]) -> RawContrast | None:
    by_key = {_norm_key(k): v for k, v in item.items()}
    name_keys = (_norm_key(names[0]), _norm_key(names[1]))
    attribute = next((by_key[k] for k in _ATTRIBUTE_KEYS if k in by_key and isinstance(by_key[k], str)), None)
    for key in _BOTH_KEYS:
        both = by_key.get(key)
        if isinstance(both, list) and len(both) == 2:
            return attribute, _side(both[0]), _side(both[1])
    first = next((by_key[k] for k in (*_FIRST_KEYS, name_keys[0]) if k in by_key), None)
    second = next((by_key[k] for k in (*_SECOND_KEYS, name_keys[1]) if k in by_key), None)
    if first is None and second is None:
        return None
    return attribute, _side(first), _side(second)


def _contrasts_in(value: Any, names: tuple[str, str]) -> list[RawContrast]:
    """The contrasts inside a decoded JSON value, however it is laid out."""
    if isinstance(value, list):
        out: list[RawContrast] = []
        for item in value:
            if isinstance(item, dict):
                found = _from_object(item, names)
                if found is not None:
                    out.append(found)
            elif isinstance(item, list) and len(item) == 3:
                out.append((item[0] if isinstance(item[0], str) else None, _side(item[1]), _side(item[2])))
        return out
    if isinstance(value, dict):
        by_key = {_norm_key(k): v for k, v in value.items()}
        for key in _LIST_KEYS:
            if isinstance(by_key.get(key), list):
                found = _contrasts_in(by_key[key], names)
                if found:
                    return found
        single = _from_object(value, names)
        if single is not None:
            return [single]
        out = []  # {"ear shape": ["small ears", "large ears"]} or {"ear shape": {"first": ..., ...}}
        for key, item in value.items():
            if isinstance(item, list) and len(item) == 2:
                out.append((str(key), _side(item[0]), _side(item[1])))
            elif isinstance(item, dict):
                found = _from_object(item, names)
                if found is not None:
                    out.append((found[0] if found[0] is not None else str(key), found[1], found[2]))
        return out
    return []


def parse_pair_answer(text: str | None, names: tuple[str, str] = ("", "")) -> list[RawContrast]:
    """Raw ``(attribute, first, second)`` contrasts of an LLM answer, in order (``names``: the two
    classes, which an answer may use as keys). Prose without JSON or contrast lines gives ``[]``."""
    text = bounded(text)
    if not text.strip():
        return []
    for chunk in [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]:
        for value in json_values(chunk):
            try:
                found = _contrasts_in(value, names)
            except RecursionError:
                continue
            if found:
                return found
    lines = (_LINE_RE.match(line) for line in text.splitlines() if len(line) <= MAX_LINE_CHARS)
    return [(m.group(1), m.group(2), m.group(3)) for m in lines if m]


def clean_phrase(text: str, name: str) -> str:
    """One side of a contrast as the phrase after "a photo of a {name}, with": sanitised, without
    list marks, quotes, a closing full stop, or a sentence frame the LLM wrote itself."""
    text = sanitize_description(" ".join(str(text).split())[:MAX_DESCRIPTION_CHARS])
    text = _LEADING_MARK_RE.sub("", text)
    text = text.replace("**", "").strip(_QUOTES + " ").rstrip(".;,:!").strip(_QUOTES + " ")
    photo = _PHOTO_OF_RE.match(text)
    if photo:  # "a photo of a pug, a breed of dog, with a smooth coat" -> "a smooth coat"
        rest = text[photo.end():]
        if rest.lower().startswith(name.lower()):
            rest = rest[len(name):]
        rest = rest.lstrip(",;: ")
        cut = rest.lower().find(", with ")
        text = rest[cut + len(", with "):] if cut >= 0 and not _LEAD_RE.match(rest) else rest
    elif text.lower().startswith(name.lower() + " "):  # "pug with a smooth coat", "pug has ..."
        rest = text[len(name) + 1:]
        if _LEAD_RE.match(rest):
            text = rest
    text = _LEAD_RE.sub("", text).strip(_QUOTES + " ,")
    first, _, rest = text.partition(" ")
    if not (len(first) > 1 and first[:2].isupper()):  # keep acronyms ("UV-reflective")
        first = first.lower()
    text = f"{first} {rest}".strip() if rest else first
    if not any(ch.isalpha() for ch in text) or text.lower() == name.lower():
        return ""
    return fit_clip_context(name, text, prompt_of=pair_sentence)


def clean_attribute(text: Any) -> str:
    """An attribute label ("ear shape"): sanitised, lower case, at most a few words."""
    text = sanitize_description(" ".join(str(text).split())[:MAX_DESCRIPTION_CHARS])
    text = _LEADING_MARK_RE.sub("", text).replace("**", "").strip(_QUOTES + " ").rstrip(".;,:!")
    return " ".join(text.lower().split()[:MAX_ATTRIBUTE_WORDS])


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def extract_contrasts(text: str | None, first_name: str, second_name: str,
                      n: int | None = None) -> list[Contrast]:
    """Parsed, sanitised, 77-token-capped, de-duplicated contrasts (at most ``n``): per contrast the
    attribute and the two full sentences, ``a photo of a {name}, with {phrase}.``"""
    out: list[Contrast] = []
    seen: set[str] = set()
    for attribute, first, second in parse_pair_answer(text, (first_name, second_name)):
        if first is None or second is None:
            continue
        label = clean_attribute(attribute) if attribute is not None else f"difference {len(out) + 1}"
        a, b = clean_phrase(first, first_name), clean_phrase(second, second_name)
        if not (label and a and b) or _key(a) == _key(b):
            continue
        keys = {_key(label), f"{_key(a)}|{_key(b)}"}
        if keys & seen:
            continue
        seen |= keys
        out.append((label, pair_sentence(first_name, a), pair_sentence(second_name, b)))
        if n is not None and len(out) >= n:
            break
    return out
