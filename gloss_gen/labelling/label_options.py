"""The settings of a ``vgloss label`` run, checked without importing torch or Ray (the command
line finds its mistakes before anything heavy loads)."""

from __future__ import annotations

from dataclasses import dataclass

from gloss_gen.core.errors import ConfigError, InputError

DEFAULT_SHARD_SIZE = 1000
DEFAULT_TOP_K = 5
EMBEDDING_DTYPES = ("float16", "float32")
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class LabelOptions:
    """How to label: ``embedding_dtype`` None stores no embedding; ``batch_size`` None is
    ``VGLOSS_MAX_BATCH``; ``decode_threads`` 0 is ``VGLOSS_DECODE_THREADS`` (0 there: one per core)."""

    top_k: int = DEFAULT_TOP_K
    embedding_dtype: str | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    batch_size: int | None = None
    decode_threads: int = 0
    progress: bool = True

    def check(self) -> None:
        if not 1 <= self.top_k <= 100:
            raise InputError("--top-k must be between 1 and 100")
        if self.embedding_dtype is not None and self.embedding_dtype not in EMBEDDING_DTYPES:
            raise InputError(f"--embedding-dtype must be one of {', '.join(EMBEDDING_DTYPES)}")
        if self.shard_size < 1:
            raise InputError(f"--shard-size must be at least 1, not {self.shard_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, not {self.batch_size}")


def require_ray():
    """The ``ray`` module with Ray Data, or one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is the [data] extra)
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data: pip install 'vgloss[ray]' (or 'ray[data]>=2.9')") from None
    return ray
