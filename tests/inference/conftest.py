"""Fixtures for the inference-path tests: the tiny model, settings for attach_engine, a bad path."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from gloss_gen.inference import paths
from gloss_gen.inference.runners import Runner
from gloss_gen.model.clip_models import load_clip


@pytest.fixture()
def fresh_tiny():
    """A new fp32 vgloss-tiny (same weights every time), with no engine attached yet."""
    return load_clip("vgloss-tiny", "none")


@pytest.fixture()
def engine_settings(tmp_path):
    """What attach_engine reads from Settings, with a private data dir."""

    def make(backend: str = "auto", precision: str = "auto", max_batch: int = 8):
        return SimpleNamespace(backend=backend, precision=precision, max_batch=max_batch,
                               data_dir=tmp_path / "vgloss-data")

    return make


def _scrambled(context, tower: str) -> Runner:
    """A path that is fast and wrong: seeded random features, never running the model (so it wins
    every timing and the gate is all that stands between it and serving)."""
    dim = int(context.model.text_projection.shape[-1])

    def run(inputs: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(inputs), dim, generator=torch.Generator().manual_seed(len(inputs)))

    return Runner("torch/scrambled", tower, run)


@pytest.fixture()
def only_paths(monkeypatch):
    """``only_paths(*names, scrambled=False)``: restrict the registry (plus the scrambled path)."""

    def restrict(*names: str, scrambled: bool = False) -> None:
        for name in list(paths.PATHS):
            if name not in names:
                monkeypatch.delitem(paths.PATHS, name)
        if scrambled:
            monkeypatch.setitem(paths.PATHS, "torch/scrambled", paths.PathSpec("torch", "scrambled", _scrambled))

    return restrict
