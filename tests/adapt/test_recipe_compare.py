"""``vgloss eval --examples --adapt clipfit`` trains on every shot and scores with the training prompt
(issue 23), as CLIPFit's trainer evaluates: one CUSTOM_TEMPLATES prompt per class."""

from __future__ import annotations

import numpy as np

from gloss_gen.adapt.compare import AdaptOptions, compare
from gloss_gen.evaluation.runner import EvalConfig, MethodSpec
from gloss_gen.model.deltas import read_header


def test_clipfit_rows_use_all_shots_and_the_trained_prompt(colour_data, colour_set, tiny_source, tmp_path):
    from gloss_gen.evaluation.datasets import open_dataset
    from gloss_gen.model.clip_models import load_clip

    config = EvalConfig(data=colour_data[1], class_set=colour_set, methods=[MethodSpec("classname", "classname")],
                        workers=0)
    options = AdaptOptions(examples=colour_data[0], shots=[2], adaptations=["clipfit"], fit_epochs=1,
                           delta_dir=tmp_path / "deltas")
    result = compare(config, options, tiny_source, None)
    by_method = {r.method: r for r in result.rows}
    trained = by_method["prompt 'a photo of a {}.'"]
    assert trained.adaptation == "clipfit" and trained.shots == 2
    assert "scored with the prompt it was trained with" in trained.detail and "(last)" in trained.detail
    assert "not the training prompt" in by_method["classname"].detail

    delta = next((tmp_path / "deltas").iterdir())
    header = read_header(delta)
    assert header["train_examples"] == 2 * len(colour_set) and header["val_examples"] == 0

    # the reference: the adapted model's image features against its embeddings of the training prompts
    adapted = load_clip("vgloss-tiny", f"none+{delta}")
    text = adapted.encode_text([f"a photo of a {name}." for name in colour_set.names])
    data = open_dataset(colour_data[1])
    from gloss_gen.imaging import ImageLimits, Preprocessor

    pre = Preprocessor.from_open_clip(adapted.model)
    import torch

    pixels = torch.stack([data.load_tensor(i, pre, ImageLimits()) for i in range(len(data))])
    images = adapted.encode_images(pixels).numpy()
    truth = np.array([colour_set.ids.index(label) for label in data.labels])
    expected = float(((images @ text.T).argmax(1) == truth).mean())
    assert abs(trained.scores.top1.value - expected) < 1e-9
