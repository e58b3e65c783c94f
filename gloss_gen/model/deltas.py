"""ClipFit deltas: the few tuned tensors of a model, applied over its base weights.

A delta file is safetensors holding only the tuned tensors (by their ``named_parameters`` names)
and a JSON header: the base model (architecture, pretrained tag, id), the class set it was fitted
on, the content hash and the training history. Never pickle.

On the command line and in settings a delta rides on the pretrained tag: ``BASE+DELTA``, e.g.
``--pretrained openai+runs/pets.safetensors`` or ``--pretrained none+fit.safetensors``. The model
id then becomes ``<base model id>+clipfit-<hash16>``, so every text and image embedding built under
the adapted model is keyed apart from the base model's.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from gloss_gen.core.errors import InputError
from gloss_gen.data.classifier import ClassifierUnreadableError, read_safetensors_metadata

DELTA_FORMAT = 1
DELTA_SUFFIX = ".safetensors"
META_KEY = "vgloss-delta"


class DeltaError(InputError):
    """A delta file that cannot be used with the model asked for; the message says why."""

    code = "invalid_delta"


def split_pretrained(tag: str | None) -> tuple[str | None, Path | None]:
    """``'openai+fit.safetensors'`` -> ``('openai', Path('fit.safetensors'))``; no delta -> ``(tag, None)``."""
    if not tag or "+" not in tag:
        return tag, None
    base, _, rest = tag.rpartition("+")
    if not rest.endswith(DELTA_SUFFIX):
        return tag, None
    return base or "none", Path(rest)


def read_header(path: Path) -> dict:

    if not path.is_file():
        raise DeltaError(f"delta file {path} does not exist")
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise DeltaError(f"{path} is not a safetensors file")
        length = int.from_bytes(head, "little")
        data = head + fh.read(min(length, 100 * 1024 * 1024))
    try:
        meta = read_safetensors_metadata(data).get(META_KEY)
    except ClassifierUnreadableError as exc:
        raise DeltaError(f"{path}: {exc}") from None
    if meta is None:
        raise DeltaError(f"{path} is not a vgloss ClipFit delta (no '{META_KEY}' metadata)")
    try:
        header = json.loads(meta)
    except ValueError:
        raise DeltaError(f"{path}: the delta's '{META_KEY}' metadata is not JSON") from None
    if not isinstance(header, dict):
        raise DeltaError(f"{path}: the delta's '{META_KEY}' metadata is not a JSON object")
    if header.get("format") != DELTA_FORMAT:
        raise DeltaError(f"{path}: delta format {str(header.get('format'))[:40]} is not {DELTA_FORMAT}")
    for name in ("base_model_id", "content_hash"):
        if not isinstance(header.get(name), str) or not header[name]:
            raise DeltaError(f"{path}: the delta's metadata has no valid '{name}'")
    return header


def delta_model_id(base_model_id: str, path: Path) -> str:
    """The adapted model's id: ``<base model id>+clipfit-<hash16>``."""
    header = read_header(path)
    if header["base_model_id"] != base_model_id:
        raise DeltaError(f"{path} was fitted on {header['base_model_id']}, not {base_model_id}")
    return f"{base_model_id}+clipfit-{header['content_hash'][:16]}"


def content_hash(base_model_id: str, tensors: dict) -> str:
    digest = hashlib.sha256(f"vgloss-clipfit-v{DELTA_FORMAT}\0{base_model_id}\0".encode())
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().float().contiguous()
        digest.update(f"{name}\0{tuple(value.shape)}\0".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Delta:
    header: dict
    tensors: dict  # name -> torch.Tensor

    @property
    def hash(self) -> str:
        return self.header["content_hash"]


def save_delta(path: Path, tensors: dict, header: dict) -> Delta:
    """Write the tuned tensors atomically; fills in format and content hash."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().float().contiguous() for name, t in tensors.items()}
    header = {**header, "format": DELTA_FORMAT, "content_hash": content_hash(header["base_model_id"], tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(header, ensure_ascii=False)})
    os.replace(tmp, path)
    return Delta(header, tensors)


def load_delta(path: Path) -> Delta:
    import torch
    from safetensors.torch import load_file

    header = read_header(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # truncated or damaged tensor data
        raise DeltaError(f"{path}: the delta's tensors cannot be read ({type(exc).__name__})") from None
    for name, value in tensors.items():
        if not bool(torch.isfinite(value).all()):
            raise DeltaError(f"{path}: tensor {name} holds NaN or infinite values; refit the delta")
    if content_hash(header["base_model_id"], tensors) != header["content_hash"]:
        raise DeltaError(f"{path}: the delta's tensors do not match its content hash (changed or damaged)")
    return Delta(header, tensors)


def apply_delta(model, path: Path, base_model_id: str) -> Delta:
    """Overwrite the delta's tensors in ``model`` (an open_clip model) in place."""
    import torch

    delta = load_delta(path)
    if delta.header["base_model_id"] != base_model_id:
        raise DeltaError(f"{path} was fitted on {delta.header['base_model_id']}, not {base_model_id}")
    params = dict(model.named_parameters())
    unknown = [name for name in delta.tensors if name not in params]
    if unknown:
        raise DeltaError(f"{path}: {len(unknown)} tensors are not parameters of the model, e.g. {unknown[0]}")
    with torch.no_grad():
        for name, value in delta.tensors.items():
            if params[name].shape != value.shape:
                raise DeltaError(f"{path}: {name} has shape {tuple(value.shape)}, the model's is "
                                 f"{tuple(params[name].shape)}")
            params[name].copy_(value.to(params[name].dtype))
    return delta
