"""Tip-Adapter as its authors run it (issue 23): the augmented cache by default, fresh Tip-F views per
epoch, each dataset's search grid. References transcribe gaopengcuhk/Tip-Adapter main.py
(run_tip_adapter_F), utils.py (search_hp) and configs/*.yaml."""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from gloss_gen.adapt.compare import AdaptOptions
from gloss_gen.adapt.examples import PAPER_AUGMENT, Examples, embed_examples, open_examples
from gloss_gen.adapt.tip import IMAGENET_CONFIG, PAPER_CONFIGS, TipConfig, fit_cache, paper_config, search_grid
from gloss_gen.data.classsets import ClassSet, ClassSpec


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_the_augmented_cache_is_the_default_everywhere():
    from gloss_gen.commands import adapt_command, eval_command

    assert PAPER_AUGMENT == 10 and AdaptOptions(examples=None).augment == 10  # configs/*.yaml augment_epoch
    parser = argparse.ArgumentParser()
    adapt_command.add_arguments(parser)
    args = parser.parse_args(["cifar10", "ex"])
    assert args.augment == 10 and args.reuse_views is False
    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    args = parser.parse_args(["data", "--examples", "ex"])
    assert args.augment == 10 and args.reuse_views is False and args.allow_overlap is False


def official_tip_f_keys(cache_keys, cache_values, epoch_features, targets, clip_weights, alpha, beta, lr, orders,
                        batch_size):
    """main.py run_tip_adapter_F's training loop, written out: each epoch the loader yields fresh
    augmented images whose features are normalised; the adapter (weight = cache_keys.t()) is trained
    by AdamW(eps 1e-4) under a cosine schedule over every step. ``orders``: the loader's shuffles."""
    adapter = torch.nn.Linear(cache_keys.shape[0], cache_keys.shape[1], bias=False)
    adapter.weight = torch.nn.Parameter(cache_keys.t().clone())
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, eps=1e-4)
    per_epoch = -(-len(targets) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, len(epoch_features) * per_epoch)
    for features, order in zip(epoch_features, orders):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            image_features = features[rows]
            image_features = image_features / image_features.norm(dim=-1, keepdim=True)
            affinity = adapter(image_features)
            cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values
            clip_logits = 100.0 * image_features @ clip_weights
            loss = F.cross_entropy(clip_logits + cache_logits * alpha, targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    return adapter.weight.detach()


def test_tip_f_trains_each_epoch_on_a_fresh_view_as_the_official_loop():
    classes, rows, dim, cache_n, epochs = 3, 12, 16, 2, 4
    g = torch.Generator().manual_seed(5)
    cache_views = torch.randn(cache_n, rows, dim, generator=g) * 3
    fresh_views = torch.randn(epochs, rows, dim, generator=g) * 3
    labels = torch.arange(rows) % classes
    prototypes = unit(torch.randn(classes, dim, generator=g))
    class_set = ClassSet("three", [ClassSpec(f"c{i}", f"class {i}") for i in range(classes)])
    examples = Examples(class_set=class_set, model_id="m", vectors=unit(cache_views[0]).numpy(),
                        labels=labels.numpy(), names=[f"{i}.png" for i in range(rows)], fingerprint="f",
                        views=cache_views.numpy(), augment=cache_n, train_views=fresh_views.numpy())
    config = TipConfig(method="tip-f", alpha=1.17, beta=1.0, folds=1, epochs=epochs, batch_size=5, seed=3)
    ours = torch.from_numpy(fit_cache(examples, prototypes.numpy(), 100.0, config).keys)

    shuffle = torch.Generator().manual_seed(config.seed)  # the loader's shuffles, drawn as train_keys draws them
    orders = [torch.randperm(rows, generator=shuffle) for _ in range(epochs)]
    cache_keys = torch.from_numpy(examples.keys).T  # utils.build_cache_model: (D, N)
    values = F.one_hot(labels, classes).float()
    args = (cache_keys, values)
    rest = (labels, prototypes.T, 1.17, 1.0, config.lr, orders, config.batch_size)
    official = official_tip_f_keys(*args, list(fresh_views), *rest)
    assert torch.allclose(ours, official, atol=1e-5, rtol=0)
    cycled = official_tip_f_keys(*args, [cache_views[e % cache_n] for e in range(epochs)], *rest)
    assert not torch.allclose(ours, cycled, atol=1e-3)  # what --reuse-views (the old way) trains on

    examples.train_views = None  # --reuse-views: the cache's views in turn
    reused = torch.from_numpy(fit_cache(examples, prototypes.numpy(), 100.0, config).keys)
    assert torch.allclose(reused, cycled, atol=1e-5, rtol=0)


def test_fresh_views_are_drawn_apart_from_the_cache_views(colour_data, colour_set, tiny_source, limits):
    source = open_examples(colour_data[0], colour_set)
    examples = embed_examples(source, tiny_source, None, limits, augment=2, train_views=3)
    assert examples.views.shape[:2] == (2, 32) and examples.train_views.shape[:2] == (3, 32)
    for fresh in examples.train_views:
        assert all(not np.allclose(fresh, cached) for cached in examples.views)
    assert not np.allclose(examples.train_views[0], examples.train_views[1])
    plain = embed_examples(source, tiny_source, None, limits, augment=2)
    assert plain.train_views is None and plain.hash != examples.hash
    np.testing.assert_array_equal(plain.views, examples.views)  # the cache keys do not change
    assert examples.take(2).train_views.shape[:2] == (3, 8)


def test_each_set_searches_its_configs_grid_and_imagenets_otherwise():
    assert paper_config("imagenet1k").file == "configs/imagenet.yaml"
    assert paper_config("cifar10") is IMAGENET_CONFIG and paper_config("stl10") is IMAGENET_CONFIG
    dtd = PAPER_CONFIGS["dtd"]
    betas, alphas = search_grid(100.0, 200, 20, dtd)
    assert np.allclose(betas, [i * (13 - 0.1) / 200 + 0.1 for i in range(200)])  # configs/dtd.yaml [13, 13]
    assert np.allclose(alphas, [i * (13 - 0.1) / 20 + 0.1 for i in range(20)])
    assert (IMAGENET_CONFIG.beta_scale, IMAGENET_CONFIG.alpha_scale, IMAGENET_CONFIG.init_alpha) == (7, 3, 1.17)

    g = torch.Generator().manual_seed(0)
    vectors = unit(torch.randn(8, 6, generator=g)).numpy()
    for name, expected in (("dtd", "configs/dtd.yaml"), ("cifar10", "configs/imagenet.yaml")):
        class_set = ClassSet(name, [ClassSpec(f"c{i}", f"class {i}") for i in range(2)])
        examples = Examples(class_set=class_set, model_id="m", vectors=vectors, labels=np.arange(8) % 2,
                            names=[f"{i}" for i in range(8)], fingerprint="f")
        fitted = fit_cache(examples, vectors[:2], 100.0, TipConfig(beta_steps=4, alpha_steps=3))
        assert fitted.paper_config == expected
        assert fitted.beta <= PAPER_CONFIGS.get(name, IMAGENET_CONFIG).beta_scale
