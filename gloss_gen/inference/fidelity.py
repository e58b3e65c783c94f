"""The fidelity gate: a non-reference path must reproduce the fp32 embeddings to serve by default.

On a fixed probe set (real JPEGs from ``../shared/data/imagenet-sample`` when it is beside the
checkout, generated images otherwise; ImageNet class prompts for the text tower), a path passes
when every embedding has cosine >= ``MIN_COSINE`` to the fp32 one and the top-1 class against a
1000-class classifier (seeded random unit prototypes) agrees with fp32's on >= ``MIN_TOP1``.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gloss_gen.data.classsets import builtin_class_set

MIN_COSINE = 0.999
MIN_TOP1 = 0.99
MAX_BATCH_DRIFT = 1e-5  # an image scores the same alone and in a batch (within float rounding)
GATE_IMAGES = 64
GATE_PROMPTS = 64
GATE_CLASSES = 1000
GATE_SEED = 1234
SAMPLE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenet-sample"


@dataclass
class GateResult:
    cosine_min: float
    cosine_mean: float
    top1_agreement: float
    samples: int
    batch_drift: float = 0.0  # max |f(x alone) - f(x in a batch)| over unit features

    @property
    def batch_invariant(self) -> bool:
        return self.batch_drift <= MAX_BATCH_DRIFT

    @property
    def passed(self) -> bool:
        return self.cosine_min >= MIN_COSINE and self.top1_agreement >= MIN_TOP1 and self.batch_invariant

    def summary(self) -> str:
        return (f"cosine to fp32 min {self.cosine_min:.5f} (mean {self.cosine_mean:.5f}), "
                f"top-1 agreement {100 * self.top1_agreement:.1f}% on {self.samples}, "
                f"batch drift {self.batch_drift:.1e}{'' if self.batch_invariant else ' (NOT batch-invariant)'}")

    def to_dict(self) -> dict:
        return asdict(self)


def _generated_jpegs(count: int) -> list[bytes]:
    """Deterministic photo-like stand-ins: smooth colour fields with shapes and noise, as JPEG."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(GATE_SEED)
    out = []
    for _ in range(count):
        h, w = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = np.stack([np.sin(xx * rng.uniform(1, 9) + rng.uniform(0, 6)) for _ in range(3)], -1)
        pixels = ((base * 0.5 + 0.5) * 200 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            box = (x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2)))
            draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def gate_jpegs(count: int = GATE_IMAGES, sample_dir: Path | None = None) -> tuple[list[bytes], str]:
    """``count`` JPEGs for the gate and where they came from."""
    folder = sample_dir or SAMPLE_DIR
    files = sorted(folder.glob("*.JPEG"))[:count] if folder.is_dir() else []
    if len(files) >= count:
        return [p.read_bytes() for p in files], f"{count} real JPEGs from {folder}"
    return _generated_jpegs(count), f"{count} generated JPEGs ({folder} not found)"


def gate_pixels(preprocess, count: int = GATE_IMAGES) -> tuple[torch.Tensor, str]:
    """The gate images decoded and run through the model's own transform."""
    from PIL import Image

    jpegs, source = gate_jpegs(count)
    tensors = []
    for data in jpegs:
        with Image.open(io.BytesIO(data)) as image:
            tensors.append(preprocess(image.convert("RGB")))
    return torch.stack(tensors), source


def gate_prompts(count: int = GATE_PROMPTS) -> list[str]:

    names = builtin_class_set("imagenet1k").names
    step = max(1, len(names) // count)
    return [f"a photo of a {name}." for name in names[::step][:count]]


def prototypes(dim: int, classes: int = GATE_CLASSES) -> torch.Tensor:
    generator = torch.Generator().manual_seed(GATE_SEED)
    return F.normalize(torch.randn(classes, dim, generator=generator), dim=-1)


def compare(reference: torch.Tensor, candidate: torch.Tensor) -> GateResult:
    """Gate figures of ``candidate`` features against the fp32 ``reference`` features."""
    ref = F.normalize(reference.float(), dim=-1)
    got = F.normalize(candidate.float(), dim=-1)
    cosine = (ref * got).sum(-1)
    protos = prototypes(ref.shape[-1])
    agree = ((ref @ protos.T).argmax(-1) == (got @ protos.T).argmax(-1)).float().mean()
    return GateResult(float(cosine.min()), float(cosine.mean()), float(agree), int(ref.shape[0]))


def batch_drift(runner, inputs: torch.Tensor, batch_size: int) -> float:
    """How much one input's features move with its batch neighbours: the first ``batch_size``
    inputs run alone, one at a time, against the same inputs run as one batch (unit features)."""
    batch = inputs[:batch_size]
    together = F.normalize(runner(batch).float(), dim=-1)
    alone = F.normalize(torch.cat([runner(batch[i : i + 1]) for i in range(len(batch))]).float(), dim=-1)
    return float((together - alone).abs().max())


def run_in_batches(runner, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([runner(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
