"""ClipFit as its authors run it (issue 23): every shot, the last epoch, Dassl's crops and batches.

The references are transcriptions of minglllli/CLIPFit on Dassl: ``configs/trainers/ClipFit/*.yaml``
(OPTIM.MAX_EPOCH), Dassl's ``INPUT.RRCROP_SCALE = (0.08, 1.0)``, ``build_data_loader(...,
drop_last=is_train and len(data_source) >= batch_size)`` and ``TEST.FINAL_MODEL = "last_step"``.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from gloss_gen.adapt.clipfit import FitConfig, _Images, fit_clipfit, paper_epochs, split_examples
from gloss_gen.adapt.examples import open_examples
from gloss_gen.imaging import ImageLimits
from gloss_gen.model.clip_models import load_clip


def test_the_defaults_are_the_authors_and_the_old_recipe_is_a_flag():
    from gloss_gen.commands import fit_command

    config = FitConfig()
    assert (config.val_fraction, config.crop_min_scale, config.drop_last, config.keeps) == (0.0, 0.08, True, "last")
    # OPTIM.MAX_EPOCH of vit_b32.yaml, rn50.yaml, rn101.yaml; main.sh's vit_b16_ep100_ctxv1.yaml
    assert [paper_epochs(m) for m in ("ViT-B-32", "ViT-B-32-quickgelu", "RN50", "RN101", "ViT-B-16")] == [
        200, 200, 200, 200, 100]
    assert paper_epochs("vgloss-tiny") == 200 and FitConfig().for_model("ViT-B-16").epochs == 100
    parser = argparse.ArgumentParser()
    fit_command.add_arguments(parser)
    args = parser.parse_args(["cifar10", "ex", "--out", "d.safetensors"])
    assert (args.val_fraction, args.crop_min_scale, args.keep_last_batch, args.epochs) == (0.0, 0.08, False, None)
    assert "--val-fraction 0.2 --patience 10" in fit_command.DESCRIPTION


@pytest.mark.parametrize("rows", [5, 31, 32, 33, 64, 70])
def test_batches_match_dassls_train_loader(rows):
    """Dassl drops the last partial batch when the set holds at least one full batch."""
    batch_size = 32
    loader = torch.utils.data.DataLoader(list(range(rows)), batch_size=batch_size,
                                         drop_last=rows >= batch_size)
    ours = FitConfig(batch_size=batch_size).batches(rows)
    assert [s.stop - s.start for s in ours] == [len(b) for b in loader]
    kept = FitConfig(batch_size=batch_size, drop_last=False).batches(rows)
    assert sum(s.stop - s.start for s in kept) == rows  # --keep-last-batch: the old behaviour


def test_training_crops_use_dassls_scale(colour_data, colour_set):
    model = load_clip("vgloss-tiny", "none")
    source = open_examples(colour_data[0], colour_set)
    for scale in (0.08, 0.5):
        crop = _Images(source, model, ImageLimits(), scale).train_pre._transform.transforms[0]
        assert type(crop).__name__ == "RandomResizedCrop" and tuple(crop.scale) == (scale, 1.0)


def test_every_shot_is_trained_on_and_the_last_epoch_is_kept(colour_data, colour_set, tmp_path):
    from safetensors.torch import load_file

    source = open_examples(colour_data[0], colour_set)
    train, val, _ = split_examples(source, FitConfig(shots=4))
    assert len(train) == 4 * len(colour_set) and len(val) == 0
    model = load_clip("vgloss-tiny", "none")
    seen = {}

    def last_tensors(log):  # the trained tensors as each epoch ends (Dassl's last_step model)
        from gloss_gen.adapt.clipfit import clipfit_parameters

        seen[log.epoch] = {n: p.detach().clone() for n, p in clipfit_parameters(model.model).items()}

    out = tmp_path / "last.safetensors"
    result = fit_clipfit(model, source, out, FitConfig(shots=4, epochs=2, lr=0.5, warmup_epochs=0, batch_size=8),
                         on_epoch=last_tensors)
    assert result.best_epoch == 2 and result.kept == "last" and result.zero_shot_val is None
    summary = result.summary(out, f"none+{out}")
    assert (summary["kept_epoch"], summary["kept"], summary["epochs_run"]) == (2, "last", 2)
    assert result.delta.header["train_examples"] == 16 and result.delta.header["val_examples"] == 0
    stored = load_file(str(out))
    assert set(stored) == set(seen[2])
    assert all(torch.equal(stored[n], seen[2][n]) for n in stored)
    assert any(not torch.equal(seen[1][n], seen[2][n]) for n in stored)  # epoch 2 changed them


def test_early_stopping_on_a_held_out_share_is_an_option(colour_data, colour_set, tmp_path):
    source = open_examples(colour_data[0], colour_set)
    config = FitConfig(shots=4, epochs=2, val_fraction=0.25, patience=1, batch_size=8)
    train, val, _ = split_examples(source, config)
    assert len(val) == len(colour_set) and len(train) == 3 * len(colour_set)
    result = fit_clipfit(load_clip("vgloss-tiny", "none"), source, tmp_path / "best.safetensors", config)
    assert result.kept == "best held-out" and result.zero_shot_val is not None
    assert result.best_epoch == 1 + max(range(len(result.history)),
                                        key=lambda i: (result.history[i].val_accuracy, -i))
