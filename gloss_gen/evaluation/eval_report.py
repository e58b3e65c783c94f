"""Presenting an evaluation: the console table, ``results.json`` and the ``top1.png`` bar chart; with
``--ood`` also an open-set table, ``open_set`` entries per method, the per-image rows
(``open_set_rows.jsonl``) and a second panel of AUROC and FPR95 in the chart."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gloss_gen.evaluation.metrics import CONFIDENCE, Accuracy
from gloss_gen.evaluation.open_set_eval import ROWS_FILE
from gloss_gen.evaluation.runner import EvalResult
from gloss_gen.evaluation.waffle_seeds import format_waffle_summary, waffle_summary

RESULTS_FORMAT = 1
RESULTS_FILE = "results.json"
CHART_FILE = "top1.png"


def percent(accuracy: Accuracy) -> str:
    return "-" if accuracy.value is None else f"{100 * accuracy.value:.2f}"


def interval(accuracy: Accuracy) -> str:
    return f"[{100 * accuracy.low:5.1f}, {100 * accuracy.high:5.1f}]"


def render_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]], left_columns: int = 1) -> str:
    """The console table of ``vgloss eval`` (and its few-shot comparison): a title line, a header,
    a rule, one line per row; the first ``left_columns`` columns left-aligned, numbers right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        )

    return "\n".join([title, line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def format_table(result: EvalResult) -> str:
    """One line of context, then a row per method: top-1 and top-k (%) with 95% intervals."""
    k = result.methods[0].scores.k if result.methods else 5
    title = (
        f"{result.num_images} images, {len(result.class_set)} classes ({result.class_set.name}); "
        f"model {result.model_id}; scoring {result.scoring}; "
        f"{int(CONFIDENCE * 100)}% Wilson intervals"
    )
    header = ("method", "top-1 %", "95% CI", f"top-{k} %", "95% CI")
    rows = [
        (m.spec.label, percent(s.top1), interval(s.top1), percent(s.topk), interval(s.topk))
        for m in result.methods
        for s in [m.scores]
    ]
    table = render_table(title, header, rows)
    waffle = waffle_summary(result)
    if waffle is not None:
        table += "\n" + format_waffle_summary(waffle)
    if result.ood is None:
        return table
    return table + "\n\n" + format_open_set_table(result)


def format_open_set_table(result: EvalResult) -> str:
    """A row per (method, open-set method): top-1 beside AUROC, FPR95 and the threshold at 95 % TPR."""
    title = (
        f"open set: {result.num_images} in-set vs {result.ood['num_images']} out-of-set images ({result.ood['path']}); "
        "FPR95 = out-of-set images kept at 95% in-set"
    )
    header = ("method", "open set", "top-1 %", "AUROC %", "FPR95 %", "threshold", "TPR %")
    rows = [
        (m.spec.label, o.open_set, percent(m.scores.top1), f"{100 * o.measures.auroc:.2f}",
         f"{100 * o.measures.fpr_at_tpr:.2f}", f"{o.measures.threshold:.6g}", f"{100 * o.measures.tpr:.1f}")
        for m in result.methods
        for o in m.open_set
    ]
    return render_table(title, header, rows, left_columns=2)


def results_dict(result: EvalResult) -> dict:
    return {
        "format": RESULTS_FORMAT,
        "created_at": result.created_at,
        "data": {
            "path": str(result.data),
            "layout": result.layout,
            "num_images": result.num_images,
            "limit": result.limit,
            "unreadable": result.unreadable,
        },
        "class_set": {"name": result.class_set.name, "num_classes": len(result.class_set)},
        "model": result.model_id,
        "scoring": result.scoring,
        "template_set": result.template_set,
        "jpeg_draft": result.jpeg_draft,
        "interval": {"method": "wilson", "confidence": CONFIDENCE},
        "methods": {
            m.spec.label: {
                "method": m.method,
                "file": str(m.spec.path) if m.spec.path else None,
                "descriptions_id": m.descriptions_id,
                "classifier_key": m.classifier_key,
                "prompt_style": m.prompt_style,
                "n": m.scores.top1.n,
                "top1": m.scores.top1.to_dict(),
                f"top{m.scores.k}": m.scores.topk.to_dict(),
                "per_class": m.scores.per_class,
                "top_confusions": m.scores.top_confusions,
                "notes": m.notes,
                **({"open_set": {o.open_set: o.to_dict() for o in m.open_set}} if m.open_set else {}),
            }
            for m in result.methods
        },
        **({"ood": result.ood} if result.ood is not None else {}),
        **({"waffle_seeds": waffle} if (waffle := waffle_summary(result)) is not None else {}),
    }


def write_json(result: EvalResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results_dict(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_rows(result: EvalResult, path: Path) -> Path:
    """Every open-set row as a JSON line: method, open_set, path, in_set, ood_score, unknown."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for method in result.methods:
            for outcome in method.open_set:
                for row in outcome.rows:
                    out.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _open_set_panel(axes, result: EvalResult) -> None:
    """AUROC and FPR95 (%) per (method, open-set method), side by side."""
    pairs = [(f"{m.spec.label}\n{o.open_set}", o.measures) for m in result.methods for o in m.open_set]
    positions = range(len(pairs))
    width = 0.38
    for offset, name, values, color in (
        (-width / 2, "AUROC", [100 * mm.auroc for _, mm in pairs], "#55A868"),
        (width / 2, "FPR95", [100 * mm.fpr_at_tpr for _, mm in pairs], "#C44E52"),
    ):
        bars = axes.bar([p + offset for p in positions], values, width, label=name, color=color)
        for bar, value in zip(bars, values):
            axes.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 2),
                          textcoords="offset points", ha="center", va="bottom", fontsize=8)
    axes.set_xticks(list(positions), [label for label, _ in pairs], fontsize=8)
    axes.set_ylim(0, 118)  # room for the legend above the 100 % bars
    axes.set_ylabel("%")
    axes.set_title(f"open set: {result.num_images} in-set vs {result.ood['num_images']} out-of-set images\n"
                   "AUROC (higher is better), FPR at 95% TPR (lower is better)", fontsize=9)
    axes.legend(fontsize=8, loc="upper center", ncol=2)
    axes.grid(axis="y", alpha=0.3)


def write_chart(result: EvalResult, path: Path) -> Path:
    """Bar chart of top-1 accuracy per method, the Wilson interval as (asymmetric) error bars; with
    ``--ood`` a second panel of AUROC and FPR95 per (method, open-set method)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [m.spec.label for m in result.methods]
    values = [100 * (m.scores.top1.value or 0.0) for m in result.methods]
    below = [v - 100 * m.scores.top1.low for v, m in zip(values, result.methods)]
    above = [100 * m.scores.top1.high - v for v, m in zip(values, result.methods)]

    # Figure + Agg canvas rather than pyplot: no global state, no display backend needed.
    open_set_pairs = sum(len(m.open_set) for m in result.methods)
    width = max(4.0, 1.3 * len(labels) + 2.0) + (max(4.0, 1.2 * open_set_pairs + 1.5) if open_set_pairs else 0.0)
    figure = Figure(figsize=(width, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    if open_set_pairs:
        axes, open_set_axes = figure.subplots(1, 2, width_ratios=[max(1, len(labels)), max(1, open_set_pairs)])
        _open_set_panel(open_set_axes, result)
    else:
        axes = figure.add_subplot()
    positions = range(len(labels))
    axes.bar(positions, values, yerr=[below, above], capsize=6, color="#4C72B0", ecolor="#222222")
    for position, value, top in zip(positions, values, above):
        axes.annotate(f"{value:.1f}", (position, value + top), xytext=(0, 3), textcoords="offset points",
                      ha="center", va="bottom", fontsize=9)
    crowded = len(labels) > 3
    axes.set_xticks(list(positions), labels, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    waffle = waffle_summary(result)
    if waffle is not None:  # WaffleCLIP's figure: the mean over its seeds, across the chart
        axes.axhline(100 * waffle["top1"]["mean"], color="#DD8452", linestyle="--", linewidth=1,
                     label=f"waffle, mean of {len(waffle['seeds'])} seeds")
        axes.legend(fontsize=8, loc="upper right")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title(
        f"{result.class_set.name}, {result.num_images} images, {result.model_id}\n"
        f"scoring: {result.scoring}; error bars: 95% Wilson interval",
        fontsize=9,
    )
    axes.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def write_outputs(result: EvalResult, out_dir: Path) -> tuple[Path, Path]:
    """results.json and top1.png (and with ``--ood`` the per-image open-set rows)."""
    if result.ood is not None:
        write_rows(result, out_dir / ROWS_FILE)
    return write_json(result, out_dir / RESULTS_FILE), write_chart(result, out_dir / CHART_FILE)
