"""WaffleCLIP's figure: the mean and standard deviation of accuracy over the seeds of its random
descriptors (``--methods waffle:seeds=N``; they report seeds 0..6). Each seed is also a row of its
own, with its Wilson intervals; the summary adds the spread that comes from the draw of words."""

from __future__ import annotations

import numpy as np

from gloss_gen.evaluation.runner import EvalResult


def waffle_summary(result: EvalResult) -> dict | None:
    """``{"seeds", "labels", "top1": {"mean", "std"}, "topK": {...}}`` over the waffle rows with a
    seed, or None with fewer than two. ``std`` is ``np.std`` (population), as WaffleCLIP reports it."""
    rows = [m for m in result.methods if m.spec.kind == "waffle" and m.spec.seed is not None]
    if len(rows) < 2:
        return None
    k = rows[0].scores.k
    top1 = np.array([m.scores.top1.value or 0.0 for m in rows])
    topk = np.array([m.scores.topk.value or 0.0 for m in rows])
    return {
        "seeds": [m.spec.seed for m in rows],
        "labels": [m.spec.label for m in rows],
        "top1": {"mean": float(top1.mean()), "std": float(top1.std())},
        f"top{k}": {"mean": float(topk.mean()), "std": float(topk.std())},
    }


def format_waffle_summary(summary: dict) -> str:
    """One line under the table: ``waffle, mean of 7 seeds: top-1 61.20 ± 0.31 %, top-5 ...``."""
    k_key = next(key for key in summary if key.startswith("top") and key != "top1")
    return (
        f"waffle, mean of {len(summary['seeds'])} seeds (± standard deviation): "
        f"top-1 {100 * summary['top1']['mean']:.2f} ± {100 * summary['top1']['std']:.2f} %, "
        f"top-{k_key[3:]} {100 * summary[k_key]['mean']:.2f} ± {100 * summary[k_key]['std']:.2f} %"
    )
