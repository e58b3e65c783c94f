"""README.md and docs/: every `vgloss` command they show parses with the real CLI, every
`VGLOSS_*` setting they name exists, and every link between them resolves."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gloss_gen.cli import build_parser
from gloss_gen.core.config import Settings

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _shell_lines(page: Path) -> list[str]:
    lines = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", page.read_text(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]
    return lines


def _vgloss_commands(page: Path) -> list[str]:
    commands = []
    for line in _shell_lines(page):
        words = shlex.split(line.split(" #", 1)[0].rstrip(" &"))
        command: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", "||", ";", "|"):
                while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):  # VAR=value prefixes
                    command = command[1:]
                if command[:1] == ["vgloss"]:
                    commands.append(" ".join(shlex.quote(w) for w in command[1:]))
                command = []
            else:
                command.append(word)
    return commands


def test_the_pages_show_vgloss_commands():
    assert _vgloss_commands(REPO / "README.md"), "the README's tour shows vgloss commands"
    assert sum(len(_vgloss_commands(p)) for p in PAGES) > 20


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_vgloss_command_shown_parses(page):
    parser = build_parser()
    for command in _vgloss_commands(page):
        words = shlex.split(command)
        if words in (["--help"], ["--version"]) or "--help" in words:
            continue
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"{page.name}: `vgloss {command}` does not parse with the current CLI")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_setting_named_exists(page):
    fields = {name.upper() for name in Settings.model_fields}
    named = set(re.findall(r"VGLOSS_([A-Z0-9_]+)", page.read_text()))
    unknown = sorted(n for n in named if n not in fields and not n.endswith("_") and n != "MAX_EXAMPLES")
    assert not unknown, f"{page.name} names settings the code does not have: {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_between_pages_resolve(page):
    for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_scripts_the_readme_runs_exist():
    readme = (REPO / "README.md").read_text()
    for script in ("scripts/serve.sh", "scripts/test.sh"):
        assert f"./{script}" in readme
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is executable"
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert "./scripts/serve.sh" in first_block and "./scripts/test.sh" in first_block
    assert "./scripts/test.sh" in (REPO / ".ci" / "run").read_text()
