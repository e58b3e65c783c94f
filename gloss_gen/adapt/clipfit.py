"""ClipFit (Li et al. 2024): fine-tune only CLIP's text FFN output biases and image LayerNorms.

The trained set is the official one: every ``c_proj.bias`` of the text transformer's MLPs and the
weight and bias of every LayerNorm of the image encoder. The loss is the official one:

    CE(logit_scale · f·tᵀ, y) + λ · (1 − mean cos(t, t₀)),   λ = 8

with ``t`` the class prompt embeddings under the tuned text encoder and ``t₀`` those of the
original model. SGD (momentum 0.9, weight decay 5e-4), lr 2e-3, batch 32, one constant warm-up
epoch at 1e-5 then a cosine schedule (the official configs); the training transform is Dassl's
random resized crop (scale 0.08-1) + flip, and the last partial batch is dropped (Dassl's
``drop_last``). As the official runs, training uses every shot and keeps the last epoch
(Dassl's ``TEST.FINAL_MODEL = "last_step"``); the epoch count follows the backbone's config
(:func:`paper_epochs`). With ``val_fraction`` > 0 a stratified share is held out instead: its
accuracy is reported every epoch, training stops when it stops improving for ``patience``
epochs, and the best epoch's tensors are kept (vgloss's recipe before issue 23). Each epoch writes a checkpoint (safetensors: tensors, momentum buffers, JSON
progress), so ``resume=True`` continues from the last finished epoch; every epoch draws its
shuffle and crops from a generator seeded by (seed, epoch), so a resumed run ends where an
uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.examples import ExampleSource, shortage_notes, shot_order, train_preprocessor
from gloss_gen.data.classifier import read_safetensors_metadata
from gloss_gen.imaging import ImageError, ImageLimits, Preprocessor
from gloss_gen.model.deltas import Delta, save_delta

CHECKPOINT_FORMAT = 1
# minglllli/CLIPFit CLIPFit/configs/trainers/ClipFit/<backbone>.yaml OPTIM.MAX_EPOCH; ViT-B-16's
# few-shot script (CLIPFit/scripts/ClipFit/main.sh) runs vit_b16_ep100_ctxv1.yaml
PAPER_EPOCHS_BY_BACKBONE = {"ViT-B-32": 200, "ViT-B-16": 100, "RN50": 200, "RN101": 200}
PAPER_EPOCHS = PAPER_EPOCHS_BY_BACKBONE["ViT-B-32"]  # any other backbone: vit_b32.yaml's
PAPER_CROP_SCALE = (0.08, 1.0)  # Dassl's INPUT.RRCROP_SCALE default; the ClipFit configs keep it


def paper_epochs(model_name: str) -> int:
    """The official epoch count for an open_clip architecture name (vit_b32.yaml's for others)."""
    base = model_name.removesuffix("-quickgelu")
    return PAPER_EPOCHS_BY_BACKBONE.get(base, PAPER_EPOCHS)


@dataclass(frozen=True)
class FitConfig:
    shots: int = 16
    epochs: int | None = None  # None: the backbone's official count (paper_epochs)
    lr: float = 2e-3
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    reg_lambda: float = 8.0
    template: str = "a photo of a {}."
    val_fraction: float = 0.0  # 0: train on every shot and keep the last epoch, as the authors
    patience: int = 10  # only with val_fraction > 0
    crop_min_scale: float = PAPER_CROP_SCALE[0]
    drop_last: bool = True  # as Dassl's train loader: when there is at least one full batch
    seed: int = 0

    def __post_init__(self):
        for name in ("shots", "epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise AdaptError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise AdaptError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if self.lr <= 0:
            raise AdaptError(f"--lr must be positive, not {self.lr}")
        if not 0 < self.crop_min_scale <= 1:
            raise AdaptError(f"--crop-scale must be in (0, 1], not {self.crop_min_scale}")
        if "{}" not in self.template:
            raise AdaptError(f"--template must contain {{}} for the class name: {self.template!r}")

    @property
    def keeps(self) -> str:
        """Which epoch's tensors the delta holds."""
        return "best held-out" if self.val_fraction else "last"

    def for_model(self, model_name: str) -> FitConfig:
        """This config with ``epochs`` settled: the backbone's official count when not given."""
        return self if self.epochs is not None else replace(self, epochs=paper_epochs(model_name))

    def batches(self, rows: int) -> list[slice]:
        """The batches of one epoch over ``rows`` shuffled examples; with ``drop_last`` the last
        partial one is left out, as Dassl's ``drop_last=is_train and len(data) >= batch_size``."""
        end = rows - rows % self.batch_size if self.drop_last and rows >= self.batch_size else rows
        return [slice(start, min(start + self.batch_size, end)) for start in range(0, end, self.batch_size)]

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.warmup_lr
        span = max(1, self.epochs - self.warmup_epochs)
        return 0.5 * self.lr * (1 + math.cos(math.pi * (epoch - self.warmup_epochs) / span))


def clipfit_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """ClipFit's trainable set, by module type: text MLP ``c_proj`` biases, image LayerNorms."""
    params = {}
    for name, module in model.named_modules():
        in_visual = name == "visual" or name.startswith("visual.")
        if in_visual and isinstance(module, torch.nn.LayerNorm):
            for part in ("weight", "bias"):
                if getattr(module, part, None) is not None:
                    params[f"{name}.{part}"] = getattr(module, part)
        elif not in_visual and name.endswith("mlp.c_proj") and getattr(module, "bias", None) is not None:
            params[f"{name}.bias"] = module.bias
    if not params:
        raise AdaptError(f"{type(model).__name__} has none of ClipFit's parameters (text c_proj, image LayerNorm)")
    return params


@dataclass
class EpochLog:
    epoch: int
    lr: float
    loss: float
    train_accuracy: float
    val_accuracy: float | None


@dataclass
class FitResult:
    delta: Delta
    path: Path
    trained_parameters: int
    total_parameters: int
    zero_shot_val: float | None
    best_val: float | None
    best_epoch: int
    history: list[EpochLog]
    notes: list[str] = field(default_factory=list)
    resumed_from: int = 0
    kept: str = "last"  # which epoch the delta holds: "last" or "best held-out"

    def summary(self, delta_path: Path, pretrained: str) -> dict:
        """What ``vgloss fit --json`` prints and a ClipFit job reports (``pretrained``: what serves it)."""
        return {
            "delta": str(delta_path),
            "content_hash": self.delta.hash,
            "pretrained": pretrained,
            "trained_parameters": self.trained_parameters,
            "total_parameters": self.total_parameters,
            "zero_shot_val": self.zero_shot_val,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "kept_epoch": self.best_epoch,
            "kept": self.kept,
            "epochs_run": len(self.history),
            "resumed_from": self.resumed_from,
            "notes": self.notes,
        }


def split_examples(source: ExampleSource, config: FitConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train rows, validation rows, notes): ``shots`` per class, then a stratified held-out part."""
    num_classes = len(source.class_set)
    order = shot_order(source.labels, num_classes, config.seed)
    chosen = [rows[: config.shots] for rows in order]
    notes = shortage_notes(source.class_set, np.array([len(r) for r in order]), config.shots)
    train, val = [], []
    for rows in chosen:
        held = int(round(config.val_fraction * len(rows))) if len(rows) >= 2 else 0
        held = min(held, len(rows) - 1) if config.val_fraction else 0
        if config.val_fraction and len(rows) >= 2:
            held = max(1, held)
        val.extend(rows[:held])
        train.extend(rows[held:])
    if not train:
        raise AdaptError("no examples to train on")
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64)), notes


class _Images:
    """Example images decoded on demand: training with augmentation, validation without."""

    def __init__(self, source: ExampleSource, model, limits, crop_min_scale: float):

        self.source = source
        self.limits = limits
        self.train_pre = train_preprocessor(model, scale=(crop_min_scale, 1.0))
        self.val_pre = Preprocessor.from_open_clip(model.model)
        self.errors = (ImageError, OSError)
        self.unreadable: dict[int, str] = {}

    def batch(self, rows, train: bool) -> tuple[torch.Tensor, list[int]]:
        tensors, kept = [], []
        for row in rows:
            row = int(row)
            if row in self.unreadable:
                continue
            try:
                tensors.append(self.source.dataset.load_tensor(row, self.train_pre if train else self.val_pre, self.limits))
                kept.append(row)
            except self.errors as exc:
                self.unreadable[row] = str(exc)
        return (torch.stack(tensors) if tensors else torch.empty(0)), kept


def _checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def _run_id(base_id: str, source: ExampleSource, config: FitConfig, train: np.ndarray) -> str:
    payload = json.dumps([base_id, source.dataset.fingerprint(), train.tolist(), asdict(config)])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def fit_clipfit(
    model,
    source: ExampleSource,
    out: Path,
    config: FitConfig = FitConfig(),
    limits=None,
    *,
    resume: bool = False,
    progress: bool = False,
    notify=lambda message: None,
    on_epoch=lambda log: None,
    stop=None,
) -> FitResult:
    """Train ClipFit's parameters of ``model`` (a ClipModel) and write the delta to ``out``.

    ``model`` is left as it came (its id names the base weights); load the adapted model with
    ``load_clip(name, f"{pretrained}+{out}")``. It is changed in place while training, so nothing
    else may use it meanwhile. ``on_epoch`` gets each epoch's :class:`EpochLog`; ``stop`` (a
    ``threading.Event``) ends training at the next batch with :class:`AdaptError`, the last
    finished epoch checkpointed.
    """
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    limits = limits or ImageLimits()
    base_id = model.id
    net = model.model
    config = config.for_model(model.model_name)
    train_rows, val_rows, notes = split_examples(source, config)
    for note in notes:
        notify(note)
    params = clipfit_parameters(net)
    original = {name: p.detach().clone() for name, p in params.items()}
    for p in net.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    trained = sum(p.numel() for p in params.values())
    total = sum(p.numel() for p in net.parameters())
    notify(f"training {trained:,} of {total:,} parameters ({100 * trained / total:.3f}% of the model)")

    prompts = [config.template.format(name) for name in source.class_set.names]
    tokens = model.tokenizer(prompts).to(model.device)
    with torch.no_grad():
        original_text = F.normalize(net.encode_text(tokens).float(), dim=-1)
    logit_scale = float(net.logit_scale.detach().exp())
    images = _Images(source, model, limits, config.crop_min_scale)
    labels = torch.as_tensor(source.labels, dtype=torch.int64)

    @torch.no_grad()
    def val_accuracy() -> float | None:
        if len(val_rows) == 0:
            return None
        text = F.normalize(net.encode_text(tokens).float(), dim=-1)
        correct = seen = 0
        for start in range(0, len(val_rows), 64):
            pixels, kept = images.batch(val_rows[start : start + 64], train=False)
            if not kept:
                continue
            feats = F.normalize(net.encode_image(pixels.to(model.device)).float(), dim=-1)
            correct += int(((feats @ text.T).argmax(-1).cpu() == labels[kept]).sum())
            seen += len(kept)
        return correct / seen if seen else None

    def train_epoch(epoch_seed: int) -> tuple[float, float]:
        """One pass over the training rows; (mean loss, training accuracy)."""
        order = train_rows[torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(epoch_seed)).numpy()]
        loss_sum = correct = seen = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed)  # the torchvision crops and flips draw from the global generator
            for batch in config.batches(len(order)):
                if stop is not None and stop.is_set():
                    raise AdaptError("ClipFit was stopped before it finished; its last finished epoch is "
                                     "checkpointed")
                pixels, kept = images.batch(order[batch], train=True)
                if not kept:
                    continue
                target = labels[kept].to(model.device)
                feats = F.normalize(net.encode_image(pixels.to(model.device)).float(), dim=-1)
                text = F.normalize(net.encode_text(tokens).float(), dim=-1)
                logits = logit_scale * feats @ text.T
                regulariser = 1.0 - F.cosine_similarity(text, original_text, dim=1, eps=1e-7).mean()
                loss = F.cross_entropy(logits, target) + config.reg_lambda * regulariser
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(kept)
                correct += int((logits.argmax(-1) == target).sum())
                seen += len(kept)
        return loss_sum / max(seen, 1), correct / max(seen, 1)

    optimizer = torch.optim.SGD(
        list(params.values()), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    run_id = _run_id(base_id, source, config, train_rows)
    ckpt = _checkpoint_path(out)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    state = {"epoch": 0, "best_epoch": 0, "best_val": None, "bad_epochs": 0, "history": [], "zero_shot_val": None}
    best = {name: p.detach().clone() for name, p in params.items()}
    resumed_from = 0
    if resume and ckpt.is_file():

        raw = ckpt.read_bytes()
        meta = json.loads(read_safetensors_metadata(raw).get("vgloss-clipfit-checkpoint", "{}"))
        if meta.get("run_id") != run_id or meta.get("format") != CHECKPOINT_FORMAT:
            raise AdaptError(f"{ckpt} is a checkpoint of another run (other model, examples or settings); "
                             "delete it or drop --resume")
        tensors = load_file(str(ckpt))
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(tensors[f"param/{name}"])
                best[name] = tensors[f"best/{name}"].clone()
                if f"momentum/{name}" in tensors:
                    optimizer.state[p]["momentum_buffer"] = tensors[f"momentum/{name}"].clone()
        state = meta["state"]
        resumed_from = state["epoch"]
        notify(f"resuming from epoch {resumed_from} of {config.epochs} ({ckpt})")
    elif resume:
        notify(f"no checkpoint at {ckpt}; starting from the beginning")
    if state["zero_shot_val"] is None:
        state["zero_shot_val"] = val_accuracy()

    bar = tqdm(total=config.epochs, initial=state["epoch"], desc="clipfit", unit="epoch", disable=not progress)
    try:
        while state["epoch"] < config.epochs:
            epoch = state["epoch"]
            lr = config.lr_at(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_mean, train_accuracy = train_epoch(config.seed * 100_003 + epoch)
            val = val_accuracy()
            log = EpochLog(epoch + 1, lr, loss_mean, train_accuracy, val)
            state["history"].append(asdict(log))
            improved = val is not None and (state["best_val"] is None or val > state["best_val"])
            if improved or val is None:
                state["best_val"], state["best_epoch"], state["bad_epochs"] = val, epoch + 1, 0
                best = {name: p.detach().clone() for name, p in params.items()}
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            _write_checkpoint(ckpt, params, best, optimizer, run_id, state, save_file)
            on_epoch(log)
            bar.update(1)
            bar.set_postfix(loss=f"{log.loss:.4f}", val="-" if val is None else f"{100 * val:.1f}%")
            if val is not None and state["bad_epochs"] >= config.patience:
                notify(f"early stop after epoch {epoch + 1}: held-out accuracy has not improved for "
                       f"{config.patience} epochs (best {100 * state['best_val']:.1f}% at epoch {state['best_epoch']})")
                break
    finally:
        bar.close()
        with torch.no_grad():
            for name, p in params.items():
                p.requires_grad_(False)
                p.copy_(original[name])
    if images.unreadable:
        shown = ", ".join(source.dataset.item_name(i) for i in sorted(images.unreadable)[:5])
        notes.append(f"{len(images.unreadable)} example images could not be read and were skipped: {shown}")
        notify(notes[-1])
    header = {
        "kind": "clipfit",
        "model_name": model.model_name,
        "base_pretrained": model.pretrained,
        "base_model_id": base_id,
        "class_set": source.class_set.to_dict(),
        "trained_parameters": trained,
        "total_parameters": total,
        "config": asdict(config),
        "train_examples": int(len(train_rows)),
        "val_examples": int(len(val_rows)),
        "zero_shot_val": state["zero_shot_val"],
        "best_val": state["best_val"],
        "best_epoch": state["best_epoch"],
        "kept": config.keeps,
        "history": state["history"],
        "notes": notes,
    }
    delta = save_delta(out, best, header)
    ckpt.unlink(missing_ok=True)
    return FitResult(
        delta, out, trained, total, state["zero_shot_val"], state["best_val"], state["best_epoch"],
        [EpochLog(**h) for h in state["history"]], notes, resumed_from, config.keeps,
    )


def _write_checkpoint(path, params, best, optimizer, run_id, state, save_file) -> None:
    tensors = {}
    for name, p in params.items():
        tensors[f"param/{name}"] = p.detach().cpu().contiguous()
        tensors[f"best/{name}"] = best[name].detach().cpu().contiguous()
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum/{name}"] = buf.detach().cpu().contiguous()
    meta = {"format": CHECKPOINT_FORMAT, "run_id": run_id, "state": state}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"vgloss-clipfit-checkpoint": json.dumps(meta)})
    os.replace(tmp, path)

