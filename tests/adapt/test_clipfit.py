"""ClipFit: the trained parameter set, training mechanics, the delta file and the adapted model id."""

from __future__ import annotations

import pytest
import torch

from gloss_gen.adapt import AdaptError
from gloss_gen.adapt.clipfit import FitConfig, clipfit_parameters, fit_clipfit
from gloss_gen.adapt.examples import embed_examples, open_examples
from gloss_gen.evaluation.metrics import Accuracy
from gloss_gen.model.clip_models import load_clip, model_id
from gloss_gen.model.deltas import DeltaError, split_pretrained


def official_filter(model) -> set[str]:
    """CLIPFit's trainers/ClipFit.py: 'c_proj.bias' in the text encoder, 'ln' in the image encoder."""
    text_encoder = {"transformer", "positional_embedding", "ln_final", "text_projection"}  # its TextEncoder
    names = {n for n, _ in model.named_parameters() if n.split(".")[0] in text_encoder and "c_proj.bias" in n}
    names |= {f"visual.{n}" for n, _ in model.visual.named_parameters() if "ln" in n}
    return names


@pytest.mark.parametrize("arch", ["vgloss-tiny", "ViT-B-32"])
def test_trainable_set_equals_the_official_name_filter(arch):
    import open_clip

    from gloss_gen.model.clip_models import register_model_configs

    register_model_configs()
    model = open_clip.create_model(arch, pretrained=None)
    ours = set(clipfit_parameters(model))
    assert ours == official_filter(model)
    layers = len(model.transformer.resblocks)
    assert sum(n.endswith("mlp.c_proj.bias") for n in ours) == layers  # one per text block
    if arch == "ViT-B-32":
        trained = sum(p.numel() for n, p in model.named_parameters() if n in ours)
        assert trained == 12 * 512 + (2 + 2 * 12) * 2 * 768  # text biases + image LN weights and biases


def _fit(model, source, out, **config):
    return fit_clipfit(model, source, out, FitConfig(**config))


def test_loss_falls_and_only_the_clipfit_tensors_change(colour_data, colour_set, tmp_path):
    model = load_clip("vgloss-tiny", "none")
    before = {n: p.detach().clone() for n, p in model.model.state_dict().items()}
    source = open_examples(colour_data[0], colour_set)
    result = _fit(model, source, tmp_path / "fit.safetensors", shots=8, epochs=8, lr=0.5, warmup_epochs=0,
                  val_fraction=0)
    losses = [h.loss for h in result.history]
    print("losses", [round(x, 4) for x in losses])
    assert losses[-1] < 0.8 * losses[0], losses
    # the model passed in is left as it came
    assert all(torch.equal(before[n], p) for n, p in model.model.state_dict().items())

    adapted = load_clip("vgloss-tiny", f"none+{tmp_path / 'fit.safetensors'}")
    trainable = set(clipfit_parameters(adapted.model))
    after = adapted.model.state_dict()
    unchanged = [n for n in before if n not in trainable]
    assert all(torch.equal(before[n], after[n]) for n in unchanged)  # bit-identical
    assert all(not torch.equal(before[n], after[n]) for n in trainable)
    assert set(result.delta.tensors) == trainable
    assert result.trained_parameters == sum(before[n].numel() for n in trainable)
    assert adapted.id == f"vgloss-tiny/none+clipfit-{result.delta.hash[:16]}" != model.id


def test_paper_settings_never_hurt_held_out_accuracy_beyond_the_interval(
    colour_data, colour_set, tiny_source, limits, tmp_path
):
    from gloss_gen.classify.scoring import ScoringHead
    from gloss_gen.data.classifier import build_classifier
    from gloss_gen.data.descriptions import describe_classname
    from gloss_gen.evaluation.runner import ModelSource

    model = load_clip("vgloss-tiny", "none")
    out = tmp_path / "paper.safetensors"
    result = _fit(model, open_examples(colour_data[0], colour_set), out, shots=8, epochs=3, val_fraction=0.25)
    assert result.zero_shot_val is not None and result.best_val >= result.zero_shot_val

    def accuracy(clip_model):
        held_out = embed_examples(open_examples(colour_data[1], colour_set), ModelSource.of(clip_model), None, limits)
        head = ScoringHead(build_classifier(clip_model, describe_classname(colour_set)))
        return Accuracy.of(head.logits(torch.from_numpy(held_out.vectors)).argmax(-1).numpy() == held_out.labels)

    zero_shot, fitted = accuracy(model), accuracy(load_clip("vgloss-tiny", f"none+{out}"))
    print(f"zero-shot {zero_shot}, clipfit {fitted}")
    assert fitted.value >= zero_shot.low


def test_resume_continues_from_the_last_epoch_and_ends_where_a_full_run_does(
    colour_data, colour_set, tmp_path, monkeypatch
):
    import gloss_gen.adapt.clipfit as clipfit

    source = open_examples(colour_data[0], colour_set)
    settings = dict(shots=4, epochs=4, lr=0.3, warmup_epochs=1, val_fraction=0)
    full = _fit(load_clip("vgloss-tiny", "none"), source, tmp_path / "full.safetensors", **settings)

    original = clipfit._write_checkpoint

    def crash_after_two(path, params, best, optimizer, run_id, state, save_file):
        original(path, params, best, optimizer, run_id, state, save_file)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(clipfit, "_write_checkpoint", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        _fit(load_clip("vgloss-tiny", "none"), source, out, **settings)
    monkeypatch.setattr(clipfit, "_write_checkpoint", original)
    assert not out.exists() and out.with_name(out.name + ".ckpt").exists()

    with pytest.raises(AdaptError, match="checkpoint of another run"):
        fit_clipfit(load_clip("vgloss-tiny", "none"), source, out, FitConfig(**{**settings, "lr": 0.1}), resume=True)
    resumed = fit_clipfit(load_clip("vgloss-tiny", "none"), source, out, FitConfig(**settings), resume=True)
    assert resumed.resumed_from == 2 and len(resumed.history) == 4
    assert resumed.delta.hash == full.delta.hash
    assert not out.with_name(out.name + ".ckpt").exists()


def test_delta_syntax_and_a_delta_for_another_base_is_refused(colour_data, colour_set, tmp_path):
    assert split_pretrained("openai+runs/pets.safetensors")[0] == "openai"
    assert split_pretrained("openai")[1] is None
    assert split_pretrained("laion+weird")[1] is None
    out = tmp_path / "d.safetensors"
    _fit(load_clip("vgloss-tiny", "none"), open_examples(colour_data[0], colour_set), out, shots=2, epochs=1,
         val_fraction=0)
    with pytest.raises(DeltaError, match="fitted on vgloss-tiny/none, not ViT-B-32/none"):
        model_id("ViT-B-32", f"none+{out}")
    with pytest.raises(DeltaError, match="does not exist"):
        model_id("vgloss-tiny", f"none+{tmp_path / 'missing.safetensors'}")


def test_bad_settings_are_clear_errors():
    with pytest.raises(AdaptError, match="--val-fraction"):
        FitConfig(val_fraction=1.5)
    with pytest.raises(AdaptError, match="--shots"):
        FitConfig(shots=0)
