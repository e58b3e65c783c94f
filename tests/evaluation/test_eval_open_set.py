"""``vgloss eval --ood``: the open-set measures it prints and writes agree with its own per-image rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gloss_gen.evaluation.open_set_eval import ROWS_FILE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def in_and_out(tmp_path: Path, sample_photos: list[Path]) -> tuple[Path, Path]:
    """12 photos filed under three CIFAR-10 classes, and 12 others (nested, one broken) as out-of-set."""
    inset, ood = tmp_path / "inset", tmp_path / "ood"
    for i, photo in enumerate(sample_photos[:12]):
        folder = inset / ("cat", "dog", "ship")[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    for i, photo in enumerate(sample_photos[12:23]):
        folder = ood / ("street" if i % 2 else "indoors" / Path("deeper"))
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    (ood / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return inset, ood


def mann_whitney_auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an in-set score > an out-of-set one), ties counting half: the area under the ROC curve."""
    above = (inside[:, None] > outside[None, :]).sum() + 0.5 * (inside[:, None] == outside[None, :]).sum()
    return float(above / (len(inside) * len(outside)))


def test_open_set_measures_agree_with_the_rows(isolated_env, monkeypatch, in_and_out, capsys):
    from gloss_gen.cli import main

    monkeypatch.setenv("VGLOSS_NEGLABEL_MAX_CANDIDATES", "600")
    inset, ood = in_and_out
    code = main(["eval", str(inset), "--class-set", "cifar10", "--methods", "classname,wordnet",
                 "--ood", str(ood), "--open-set", "mcm,neglabel", "--out", "out"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "open set: 12 in-set vs 11 out-of-set images" in captured.out
    assert "1 out-of-set images could not be read and are left out: broken.jpg" in captured.err

    results = json.loads(Path("out/results.json").read_text())
    assert results["ood"]["num_images"] == 11 and list(results["ood"]["unreadable"]) == ["broken.jpg"]
    rows = [json.loads(line) for line in Path("out", ROWS_FILE).read_text().splitlines()]
    assert len(rows) == 2 * 2 * (12 + 11)
    assert all(Path(row["path"]).is_file() for row in rows)
    assert {row["path"] for row in rows if not row["in_set"]} <= {str(p) for p in ood.rglob("*.jpg")}

    table = captured.out.split("open set:")[1]
    for method in ("classname", "wordnet"):
        entry = results["methods"][method]
        for open_set in ("mcm", "neglabel"):
            measured = entry["open_set"][open_set]
            mine = [r for r in rows if r["method"] == method and r["open_set"] == open_set]
            inside = np.array([r["ood_score"] for r in mine if r["in_set"]])
            outside = np.array([r["ood_score"] for r in mine if not r["in_set"]])
            assert (measured["in_set"], measured["out_of_set"]) == (12, 11)
            assert measured["auroc"] == pytest.approx(mann_whitney_auroc(inside, outside), abs=1e-12)
            assert all(r["unknown"] == (r["ood_score"] < measured["threshold"]) for r in mine)
            assert measured["fpr95"] == pytest.approx(np.mean([not r["unknown"] for r in mine if not r["in_set"]]))
            assert measured["tpr"] == pytest.approx(np.mean([not r["unknown"] for r in mine if r["in_set"]]))
            assert measured["tpr"] == pytest.approx(11 / 12)  # of k/12, the closest to 95 %
            row = next(line for line in table.splitlines() if line.split()[:2] == [method, open_set])
            top1 = f"{100 * entry['top1']['accuracy']:.2f}"
            assert row.split()[2:5] == [top1, f"{100 * measured['auroc']:.2f}", f"{100 * measured['fpr95']:.2f}"]
        assert "negatives" in entry["open_set"]["neglabel"] and entry["open_set"]["neglabel"]["default"]["threshold"] == 0.5
    assert Path("out/top1.png").read_bytes()[:8] == PNG_MAGIC


def test_open_set_options_are_checked_before_any_image_is_read(isolated_env, in_and_out, capsys):
    from gloss_gen.cli import main

    inset, ood = in_and_out
    for args, message in [
        (["--open-set", "mcm"], "--open-set measures detection of out-of-set images: give them with --ood OOD_DIR"),
        (["--ood", str(ood), "--open-set", "mcm,odin"], "unknown open-set method 'odin' in --open-set"),
        (["--ood", "nowhere"], "--ood nowhere does not exist"),
        (["--ood", str(ood), "--examples", str(inset)], "--ood does not combine with --examples"),
    ]:
        code = main(["eval", str(inset), "--class-set", "cifar10", *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    store = Path(isolated_env["VGLOSS_DATA_DIR"]) / "store"
    assert not [path for path in store.rglob("*") if path.is_file()], "nothing may be cached"
