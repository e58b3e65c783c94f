"""The one pattern every outside name and id must match before it reaches the store.

Class-set names, job ids and anything else a user, an HTTP client or a file gives that becomes
part of a store key are checked here, at the edge (the API's path and body parameters, the
CLI's class-set files):

    1-64 characters: ASCII letters, digits, '.', '_' or '-', starting with a letter or digit

so ``..``, ``/``, ``\\``, ``:`` (the store's key separator), NUL, spaces and very long strings are
refused with a one-line :class:`InvalidNameError` (code ``invalid_name``). The directory store
does not rely on this alone: it encodes every key part so that no key can leave its root
(:class:`gloss_gen.data.store.DirectoryBackend`).
"""

from __future__ import annotations

import re

from gloss_gen.core.errors import InputError

NAME_MAX_CHARS = 64
NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{NAME_MAX_CHARS - 1}}}$"
"""The pattern itself, for pydantic/FastAPI parameters (``Path(pattern=NAME_PATTERN)``)."""

NAME_RULE = f"1-{NAME_MAX_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit"

_NAME_RE = re.compile(NAME_PATTERN)


class InvalidNameError(InputError):
    """A name or id that does not match :data:`NAME_PATTERN`."""

    code = "invalid_name"


def is_valid_name(value: object) -> bool:
    """Whether ``value`` is a string matching :data:`NAME_PATTERN` (``$`` never admits a newline)."""
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None


def validate_name(value: object, what: str = "name") -> str:
    """``value`` if it matches :data:`NAME_PATTERN`, else :class:`InvalidNameError` naming ``what``.

    The message shows at most the first 40 characters of a bad value, so a megabyte-long name
    does not come back in full.
    """
    if is_valid_name(value):
        return value  # type: ignore[return-value]
    shown = repr(value[:40] + "...") if isinstance(value, str) and len(value) > 40 else repr(value)
    raise InvalidNameError(f"invalid {what} {shown}: use {NAME_RULE}")
