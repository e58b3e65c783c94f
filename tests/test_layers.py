"""Folders are layers: the import contract in pyproject.toml holds, and the tree stays navigable
(no module over 500 lines, no two modules with one file name)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("gloss_gen", "app")


def _modules() -> list[Path]:
    return [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]


def test_import_contract_holds():
    """lint-imports (import-linter) over gloss_gen and app: no cycle, no import up a layer
    (imports inside functions count), the library never imports the server."""
    linter = shutil.which("lint-imports")
    if linter is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([linter, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_contract_fails_on_an_import_up_a_layer(tmp_path):
    """The contract is not vacuous: a core module importing the CLI breaks it."""
    linter = shutil.which("lint-imports")
    if linter is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    copy = tmp_path / "repo"
    for name in (*PACKAGES, "pyproject.toml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / name)
    names = copy / "gloss_gen" / "core" / "names.py"
    names.write_text(names.read_text() + "\n\ndef _up():\n    from gloss_gen import cli  # noqa: F401\n")
    proc = subprocess.run([linter, "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "gloss_gen.core.names -> gloss_gen.cli" in proc.stdout


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"split these modules: {long}"


def test_module_file_names_are_unique():
    names = Counter(p.name for p in _modules() if p.name not in ("__init__.py", "__main__.py"))
    assert not [n for n, c in names.items() if c > 1], [n for n, c in names.items() if c > 1]

