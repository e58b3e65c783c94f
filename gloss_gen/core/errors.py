"""One exception root for everything vgloss raises on purpose.

Every error carries a snake_case ``code`` and a one-sentence ``message`` that is safe to show a
user or an HTTP client. The families below tell callers what to do about it:

- :class:`InputError` — the caller's input is wrong (a bad file, name, image, field); fix it and
  retry. The CLI exits 2 with the message; the server answers 4xx.
- :class:`NotFoundError` — a named thing does not exist (a class set, a job).
- :class:`UnavailableError` — something the work needs is down or busy (the store, the queue, the
  model while it loads); retry later. ``retry_after_s`` says when, where known.
- :class:`CorruptDataError` — stored bytes that cannot be read back as what they claim to be.
- :class:`ConfigError` — the settings cannot work (no WordNet, no LLM key, a bad model name).

Subclasses add a fixed ``code`` where callers need to tell them apart; a code may also be given
per instance (image rejections use several codes under one class). Only ``app/error_envelope.py`` maps
codes to HTTP statuses, so the library never mentions HTTP.
"""

from __future__ import annotations


class VglossError(Exception):
    """The root: ``code`` (snake_case), ``message`` (one sentence), optional ``retry_after_s``."""

    code: str = "vgloss_error"

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        # Subclasses take their own constructor arguments; rebuild from the state instead, so
        # errors cross process pools intact.
        return _rebuild, (type(self), self.message, dict(self.__dict__))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


def _rebuild(cls: type[VglossError], message: str, state: dict) -> VglossError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InputError(VglossError):
    """The caller's input is wrong; the message says what to fix."""

    code = "invalid_input"


class NotFoundError(InputError):
    """A named thing does not exist."""

    code = "not_found"


class UnavailableError(VglossError):
    """Something the work needs is down or busy; retrying later can succeed."""

    code = "unavailable"


class CorruptDataError(VglossError):
    """Stored bytes that cannot be read back as what they claim to be."""

    code = "corrupt_data"


class ConfigError(VglossError):
    """The configuration cannot work; the message names the fix."""

    code = "configuration_error"


class AdaptError(InputError):
    """Bad few-shot input (examples, labels, shots, hyper-parameters); the message says which."""

    code = "invalid_adaptation"


class EvalError(InputError):
    """Bad evaluation input (methods, data, labels); the message says which and why."""
