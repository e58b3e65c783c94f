"""Can the named CLIP weights be had here? Answered before anything loads, in one line.

A machine without internet (or behind a proxy that drops the Hugging Face hub) would otherwise
spend minutes in download retries and end in a chained traceback. The check is cheap: a local
file, the Hugging Face cache, then one short request to the hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from gloss_gen.core.errors import ConfigError

RANDOM_WEIGHTS_WARNING = (
    "WARNING: pretrained=none: the CLIP model has RANDOM weights, so every score it gives is meaningless "
    "(fine for smoke tests; set VGLOSS_PRETRAINED or --pretrained, e.g. openai, for real results)"
)
HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OFFLINE_HINT = (
    "to check the installation without weights, use --pretrained none (or VGLOSS_PRETRAINED=none; "
    "./scripts/serve.sh --offline): random weights, meaningless scores"
)


class WeightsUnavailableError(ConfigError):
    """The CLIP weights the settings name cannot be loaded or downloaded from here."""

    code = "weights_unavailable"


def weights_problem(model_name: str, pretrained: str | None, cache_dir: str | None = None,
                    timeout_s: float = 5.0) -> str | None:
    """Why ``model_name`` / ``pretrained`` cannot be loaded here, or ``None`` when it can."""
    import open_clip

    tag = (pretrained or "none").strip()
    tag = tag.split("+", 1)[0] if tag.endswith(".safetensors") and "+" in tag else tag
    if tag.lower() in ("", "none"):
        return None
    if model_name.startswith("local-dir:"):
        path = Path(model_name.split(":", 1)[1])
        return None if path.is_dir() else f"no model directory {path}"
    if model_name.startswith("hf-hub:"):
        return _hub_problem(model_name.split(":", 1)[1], cache_dir, timeout_s)
    if os.sep in tag or tag.endswith((".pt", ".bin", ".safetensors", ".pth")):
        return None if Path(tag).is_file() else f"no checkpoint file {tag}"
    config = open_clip.get_pretrained_cfg(model_name, tag)
    if not config:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        return f"{model_name} has no pretrained weights named {tag!r} (known: {known})"
    repo = (config.get("hf_hub") or "").strip("/")
    if not repo:
        return None  # a URL-only checkpoint: open_clip reports its own download errors
    return _hub_problem(repo, cache_dir, timeout_s)


def _hub_problem(repo: str, cache_dir: str | None, timeout_s: float) -> str | None:
    import httpx
    from huggingface_hub import try_to_load_from_cache

    for name in HUB_FILES:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return f"the weights ({repo}) are not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        answer = httpx.head(f"{endpoint}/api/models/{repo}", timeout=timeout_s, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"the weights ({repo}) are not cached and {endpoint} cannot be reached ({type(exc).__name__})"
    if answer.status_code >= 500:
        return f"the weights ({repo}) are not cached and {endpoint} answered {answer.status_code}"
    return None


def require_weights(model_name: str, pretrained: str | None, cache_dir: str | None = None) -> None:
    """Raise :class:`WeightsUnavailableError` (one line, naming the fix) when the weights cannot be had."""
    problem = weights_problem(model_name, pretrained, cache_dir)
    if problem is not None:
        raise WeightsUnavailableError(f"cannot load CLIP {model_name} with pretrained={pretrained!r}: {problem}; "
                                      f"{OFFLINE_HINT}")
