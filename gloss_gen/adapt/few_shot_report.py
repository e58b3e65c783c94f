"""Presenting a few-shot comparison: the console table, ``few_shot.json`` and ``few_shot.png``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gloss_gen.adapt.compare import Comparison
from gloss_gen.evaluation.eval_report import interval, percent, render_table
from gloss_gen.evaluation.metrics import CONFIDENCE

JSON_FILE = "few_shot.json"
CHART_FILE = "few_shot.png"


def format_table(result: Comparison) -> str:
    k = result.rows[0].scores.k if result.rows else 5
    title = (
        f"{result.num_images} evaluation images, {result.num_classes} classes ({result.class_set_name}); "
        f"model {result.model_id}; examples {result.examples} (up to {max(result.examples_per_class)} per class); "
        f"{int(CONFIDENCE * 100)}% Wilson intervals"
    )
    header = ("method", "adaptation", "shots", "top-1 %", "95% CI", f"top-{k} %", "95% CI")
    rows = [
        (r.method, r.adaptation, str(r.shots) if r.shots else "-", percent(r.scores.top1),
         interval(r.scores.top1), percent(r.scores.topk), interval(r.scores.topk))
        for r in result.rows
    ]
    return render_table(title, header, rows, left_columns=2)


def results_dict(result: Comparison) -> dict:
    return {
        "data": str(result.data),
        "examples": str(result.examples),
        "examples_per_class": result.examples_per_class,
        "model": result.model_id,
        "class_set": {"name": result.class_set_name, "num_classes": result.num_classes},
        "num_images": result.num_images,
        "interval": {"method": "wilson", "confidence": CONFIDENCE},
        "rows": [
            {"method": r.method, "adaptation": r.adaptation, "shots": r.shots, "top1": r.scores.top1.to_dict(),
             f"top{r.scores.k}": r.scores.topk.to_dict(), "detail": r.detail, "notes": r.notes}
            for r in result.rows
        ],
        "notes": result.notes,
    }


def write_chart(result: Comparison, path: Path) -> Path:
    """Top-1 accuracy against shots (log2 axis), one line per (method, adaptation), Wilson error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    series: dict[tuple[str, str], list] = {}
    for row in result.rows:
        series.setdefault((row.method, row.adaptation), []).append(row)
    shots = sorted({r.shots for r in result.rows if r.shots})
    for (method, adaptation), rows in series.items():
        label = f"{method} / {adaptation}"
        if adaptation == "zero-shot":
            value = 100 * (rows[0].scores.top1.value or 0)
            axes.axhline(value, linestyle="--", linewidth=1, color="#555555" if len(series) < 6 else None,
                         label=f"{label} ({value:.1f})")
            continue
        x = [r.shots for r in rows]
        y = [100 * (r.scores.top1.value or 0) for r in rows]
        below = [v - 100 * r.scores.top1.low for v, r in zip(y, rows)]
        above = [100 * r.scores.top1.high - v for v, r in zip(y, rows)]
        axes.errorbar(x, y, yerr=[below, above], marker="o", capsize=4, label=label)
    if shots:
        axes.set_xscale("log", base=2)
        axes.set_xticks(shots, [str(s) for s in shots])
    axes.set_xlabel("examples per class (shots)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(f"{result.class_set_name}, {result.num_images} images, {result.model_id}\n"
                   "error bars: 95% Wilson interval", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def write_outputs(result: Comparison, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_FILE
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(results_dict(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, json_path)
    return json_path, write_chart(result, out_dir / CHART_FILE)
