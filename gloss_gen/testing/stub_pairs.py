"""The LLM stub's answers to the FuDD pair prompt (:func:`gloss_gen.describe.llm.build_pair_messages`):
``n`` visual attributes, each with a different look for the two classes::

    {"attribute": "body colour", "first": "a mostly tan body", "second": "a mostly reddish body"}

Deterministic: the attributes' order is picked by a hash of the pair, each side's look by a hash
of its class name and the attribute, and the second side moves on when both would look the same.
Standard library only, like the stub.
"""

from __future__ import annotations

import hashlib
import re

try:
    from .stub_phrases import _COLOURS, _PARTS, _TEXTURES, with_article
except ImportError:  # started by file path, like llm_stub
    from stub_phrases import _COLOURS, _PARTS, _TEXTURES, with_article  # type: ignore[no-redef]

_ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("body colour", tuple(f"a mostly {c} body" for c in _COLOURS)),
    ("size and build", ("a small, compact build", "a large, bulky build", "a long, slender shape",
                        "a short, stocky shape", "a tall, narrow shape", "a low, wide shape")),
    ("outline", ("a rounded outline", "an angular outline", "a tapered outline", "a boxy outline",
                 "a streamlined outline", "an irregular outline")),
    ("surface texture", tuple(f"a {t} surface" for t in _TEXTURES)),
    ("markings", ("no visible markings", "bold dark stripes", "small pale spots", "a white patch on the front",
                  "a dark band across the middle", "contrasting pale edges")),
    ("surroundings", ("a grassy field behind it", "water in the background", "a plain indoor background",
                      "a city street behind it", "trees in the background", "open sky behind it")),
    *((f"{part} colour", tuple(with_article(f"{c} {part}") for c in _COLOURS)) for part in _PARTS),
)

FIRST_RE = re.compile(r"^First class:\s*(.+?)\s*$", re.MULTILINE)
SECOND_RE = re.compile(r"^Second class:\s*(.+?)\s*$", re.MULTILINE)


def _pick(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(p.lower() for p in parts).encode()).digest()[:4], "big")


def pair_names(prompt: str) -> tuple[str, str] | None:
    """The two classes a FuDD pair prompt names; ``None`` for any other prompt."""
    first, second = FIRST_RE.search(prompt), SECOND_RE.search(prompt)
    if not (first and second):
        return None
    return first.group(1).strip().strip('"'), second.group(1).strip().strip('"')


def stub_contrasts(first: str, second: str, n: int) -> list[dict[str, str]]:
    """``n`` (at most 18) attributes with a look for each class, never the same look for both."""
    start = _pick(first, second)
    out = []
    for k in range(min(n, len(_ATTRIBUTES))):
        attribute, looks = _ATTRIBUTES[(start + k) % len(_ATTRIBUTES)]
        a = _pick(first, attribute) % len(looks)
        b = _pick(second, attribute) % len(looks)
        if b == a:
            b = (b + 1) % len(looks)
        out.append({"attribute": attribute, "first": looks[a], "second": looks[b]})
    return out


def contrast_lines(contrasts: list[dict[str, str]]) -> str:
    """Numbered ``attribute: first | second`` lines (the stub's chatty mode)."""
    return "\n".join(f"{i}. {c['attribute']}: {c['first']} | {c['second']}" for i, c in enumerate(contrasts, 1))
