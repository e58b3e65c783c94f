"""What ``vgloss label`` reads: every image a SOURCE names, in a fixed order.

A SOURCE is one of

- a folder: every file below it (recursively) whose suffix is an image suffix, hidden files and
  folders left out, sorted by relative path; ``path`` is the folder as given joined with it;
- tar shards (WebDataset): ``shards.tar``, a glob (``shards/*.tar``) or a brace pattern
  (``shards-{000..009}.tar``, ``{train,val}.tar``); every member with an image suffix, in archive
  order; ``path`` is the member name and ``archive`` the tar file as given. Members are read by
  offset, so only uncompressed tars are accepted (WebDataset shards are);
- a list of paths: ``.txt`` (one a line), ``.csv`` or ``.parquet`` (a ``path`` column); relative
  paths are relative to the list's folder; ``path`` is the entry as written. A listed file that
  does not exist becomes a row with an error, as an unreadable one does.

The order is part of the output's identity: shards are contiguous runs of it (see
:mod:`.shards`), so a re-run lists the same items into the same shards.
"""

from __future__ import annotations

import csv
import glob
import os
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gloss_gen.core.errors import InputError
from gloss_gen.core.file_types import IMAGE_SUFFIXES

# The image suffixes a folder or tar is scanned for (the eval data sets' list, plus .jfif).
PATH_LIST_SUFFIXES = (".txt", ".csv", ".parquet")
_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_BRACE_CHOICE = re.compile(r"\{([^{}]*,[^{}]*)\}")


class SourceError(InputError):
    """A SOURCE that names nothing readable; the message says which and why."""

    code = "bad_source"


@dataclass(frozen=True)
class SourceItem:
    """One image to label: ``path`` as the user gave or named it; where its bytes are.

    ``file`` is the file to read: the image itself, or with ``archive`` set, the tar holding it
    at ``offset`` (``size`` bytes)."""

    path: str
    file: str
    archive: str | None = None
    offset: int = 0
    size: int = -1

    def byte_size(self) -> int:
        """The image's size in bytes, without reading it (:class:`OSError` if it cannot be had)."""
        return self.size if self.archive is not None else os.stat(self.file).st_size

    def read_bytes(self) -> bytes:
        """The image's bytes; an unreadable file (or a tar cut short) raises :class:`OSError`."""
        with open(self.file, "rb") as handle:
            if self.archive is None:
                return handle.read()
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise OSError(f"the archive ends {self.size - len(data)} bytes before this member does (a truncated tar)")
        return data

    def to_json(self) -> list:
        return [self.path, self.file, self.archive, self.offset, self.size]

    @classmethod
    def from_json(cls, row: Sequence) -> SourceItem:
        path, file, archive, offset, size = row
        return cls(path, file, archive, int(offset), int(size))


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def expand_braces(pattern: str) -> list[str]:
    """``a-{00..02}.tar`` -> ``a-00.tar a-01.tar a-02.tar`` (zero padding kept), ``{x,y}`` ->
    both; several braces expand left to right (the shell's order)."""
    found = [m for m in (_BRACE_RANGE.search(pattern), _BRACE_CHOICE.search(pattern)) if m is not None]
    if not found:
        return [pattern]
    match = min(found, key=lambda m: m.start())
    head, tail = pattern[: match.start()], pattern[match.end() :]
    if match.re is _BRACE_RANGE:
        low, high = match.group(1), match.group(2)
        width = len(low) if low.startswith("0") and len(low) > 1 else 0
        step = 1 if int(high) >= int(low) else -1
        choices = [str(n).zfill(width) for n in range(int(low), int(high) + step, step)]
    else:
        choices = match.group(1).split(",")
    return [expanded for choice in choices for expanded in expand_braces(head + choice + tail)]


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def list_folder(folder: Path, given: str) -> list[SourceItem]:
    items = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or not is_image_name(name):
                continue
            full = Path(root) / name
            relative = full.relative_to(folder)
            items.append((relative.as_posix(), full))
    items.sort()
    prefix = given.rstrip("/\\")
    return [SourceItem(f"{prefix}/{relative}" if prefix else relative, str(full)) for relative, full in items]


def list_tar(archive: Path, given: str) -> list[SourceItem]:
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = tar.getmembers()
    except tarfile.ReadError as exc:
        raise SourceError(f"{given}: not an uncompressed tar archive ({exc}); WebDataset shards are plain .tar") from None
    except OSError as exc:
        raise SourceError(f"{given}: cannot be read ({exc.strerror or exc})") from None
    return [
        SourceItem(member.name, str(archive), given, member.offset_data, member.size)
        for member in members
        if member.isfile() and is_image_name(member.name) and not Path(member.name).name.startswith(".")
    ]


def _listed_paths(list_file: Path, given: str) -> list[str]:
    suffix = list_file.suffix.lower()
    if suffix == ".txt":
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if suffix == ".csv":
        with list_file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            if "path" not in header:
                raise SourceError(f"{given}: needs a 'path' column (found {', '.join(map(repr, header)) or 'nothing'})")
            reader.fieldnames = header
            return [(row.get("path") or "").strip() for row in reader if (row.get("path") or "").strip()]
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(list_file)
    except Exception as exc:  # pyarrow's errors name the problem; no one class covers them
        raise SourceError(f"{given}: not a readable Parquet file ({exc})") from None
    if "path" not in schema.names:
        raise SourceError(f"{given}: needs a 'path' column (found {', '.join(map(repr, schema.names))})")
    column = pq.read_table(list_file, columns=["path"]).column("path").to_pylist()
    return [str(value).strip() for value in column if value is not None and str(value).strip()]


def list_paths(list_file: Path, given: str) -> list[SourceItem]:
    root = list_file.parent
    items = []
    for entry in _listed_paths(list_file, given):
        path = Path(entry).expanduser()
        items.append(SourceItem(entry, str(path if path.is_absolute() else root / path)))
    return items


def _one_source(given: str) -> list[SourceItem]:
    path = Path(given).expanduser()
    if path.is_dir():
        return list_folder(path, given)
    if not path.is_file():
        raise SourceError(f"{given}: no such file or folder")
    lower = path.name.lower()
    if lower.endswith(".tar"):
        return list_tar(path, given)
    if lower.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        raise SourceError(f"{given}: compressed tars cannot be read by offset; give uncompressed .tar shards")
    if path.suffix.lower() in PATH_LIST_SUFFIXES:
        return list_paths(path, given)
    if is_image_name(lower):
        return [SourceItem(given, str(path))]
    raise SourceError(f"{given}: not a folder, a .tar shard, a .txt/.csv/.parquet list of paths or an image")


def expand_source(pattern: str) -> list[str]:
    """The sources one SOURCE argument names: brace patterns expanded, globs matched (sorted)."""
    named = []
    for expanded in expand_braces(pattern):
        if glob.has_magic(expanded) and not Path(expanded).exists():
            matches = sorted(glob.glob(os.path.expanduser(expanded)))
            if not matches:
                raise SourceError(f"{expanded}: matches no file")
            named.extend(matches)
        else:
            named.append(expanded)
    return named


def list_sources(sources: Iterable[str]) -> list[SourceItem]:
    """Every image the SOURCE arguments name, in order: source by source as given."""
    sources = [str(source) for source in sources]
    if not sources:
        raise SourceError("give at least one SOURCE (a folder, .tar shards or a list of paths)")
    items: list[SourceItem] = []
    seen: set[tuple] = set()
    for pattern in sources:
        for given in expand_source(pattern):
            for item in _one_source(given):
                where = (os.path.abspath(item.file), item.offset)
                if where not in seen:  # a file named twice (two overlapping SOURCEs) is labelled once
                    seen.add(where)
                    items.append(item)
    if not items:
        raise SourceError(f"{', '.join(sources)}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return items
