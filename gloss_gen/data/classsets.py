"""Class sets: named, ordered lists of classes, built in or loaded from a user's file.

Built-in sets (``imagenet1k``, ``cifar10``, ``stl10``) ship as package data. A custom set is a
``.txt`` file (one label per line) or a ``.json``/``.yaml`` list of ``{name, synset?, id?}``
(a top-level ``{"name": ..., "classes": [...], "templates": ...}`` object is accepted too). Labels
without an explicit synset are resolved through WordNet (:func:`gloss_gen.data.wordnet.resolve_label`).

Every class set names the prompt template set its class-name prompts use
(:data:`gloss_gen.core.prompts.TEMPLATE_SETS`): CLIP's per-dataset templates for ``cifar10`` and
``stl10``, CLIP's 80 ImageNet templates (``openai``) for everything else unless a file says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from gloss_gen.core.errors import InputError
from gloss_gen.core.names import NAME_RULE, is_valid_name
from gloss_gen.core.prompts import TEMPLATE_SETS
from gloss_gen.data import wordnet

log = logging.getLogger(__name__)

BUILTIN_CLASS_SETS = ("imagenet1k", "cifar10", "stl10")
CUSTOM_SUFFIXES = (".txt", ".json", ".yaml", ".yml")


class ClassSetError(InputError):
    """A class set that cannot be found or is malformed; the message says which and why."""

    code = "invalid_class_set"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass
class ClassSpec:
    id: str
    name: str
    synset: str | None = None
    ambiguous: bool = False
    alternatives: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        if not self.alternatives:
            data.pop("alternatives")
        if not self.ambiguous:
            data.pop("ambiguous")
        return data


@dataclass
class ClassSet:
    name: str
    classes: list[ClassSpec]
    description: str = ""
    templates: str = "openai"  # the template set for class-name prompts (gloss_gen.core.prompts)

    def __post_init__(self) -> None:
        # a lone surrogate (JSON "\ud800", decoded with surrogatepass) cannot be stored or hashed as UTF-8
        texts = [self.name, self.description, *(t for c in self.classes for t in (c.id, c.name, c.synset or ""))]
        for text in texts:
            if isinstance(text, str) and _has_surrogate(text):
                raise ClassSetError(f"class set {self.name.encode('unicode_escape').decode()[:80]!r}: "
                                    f"{text.encode('unicode_escape').decode()[:80]!r} is not valid Unicode "
                                    "(a lone surrogate)")

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def index_of(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.classes)}

    def content_hash(self) -> str:
        """Stable hash of what the classes are (ids, names, synsets, order)."""
        payload = json.dumps([[c.id, c.name, c.synset] for c in self.classes], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "templates": self.templates,
            "classes": [c.to_dict() for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClassSet:
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            classes=[ClassSpec(**c) for c in data["classes"]],
            templates=data.get("templates") or "openai",
        )


def slugify(label: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", label.strip().lower()).strip("-")
    return slug or "class"


def validate_class_set_name(name: str) -> str:
    """``name`` if it matches the one name pattern (:mod:`gloss_gen.core.names`), else ClassSetError."""
    if not is_valid_name(name):
        shown = repr(name[:40] + "...") if isinstance(name, str) and len(name) > 40 else repr(name)
        raise ClassSetError(f"invalid class set name {shown}: use {NAME_RULE}")
    return name


def builtin_class_set(name: str) -> ClassSet:
    if name not in BUILTIN_CLASS_SETS:
        raise ClassSetError(
            f"unknown class set {name!r}; built in: {', '.join(BUILTIN_CLASS_SETS)}, "
            "or give a .txt/.json/.yaml file"
        )
    text = resources.files("gloss_gen.data").joinpath("builtin", f"{name}.json").read_text(encoding="utf-8")
    return ClassSet.from_dict(json.loads(text))


MAX_LABEL_CHARS = 300
MAX_FILE_BYTES = 16 * 1024 * 1024


def validate_template_set(templates: str, where: str) -> str:

    if templates not in TEMPLATE_SETS:
        raise ClassSetError(
            f"{where}: unknown template set {templates!r}; choose from {', '.join(TEMPLATE_SETS)}"
        )
    return templates


def build_class_set(
    name: str,
    entries: Sequence[str | dict],
    description: str = "",
    lines: Sequence[int] | None = None,
    templates: str = "openai",
) -> ClassSet:
    """A class set from labels or ``{name, synset?, id?}`` dicts, resolving synsets via WordNet.

    An explicit synset always wins; otherwise the most common noun sense is chosen and the other
    senses are recorded with ``ambiguous=True``. A label WordNet does not know keeps no synset
    (methods fall back to class-name prompts) and logs a warning. Labels without an ``id`` get
    their slug (``cat``, ``cat-2`` for a second ``cat``); two explicit ids that are the same are
    refused. ``lines`` (the file line of each entry) makes the errors point at the line.
    """

    if not entries:
        raise ClassSetError(f"class set {name!r} has no classes")
    specs = [_checked_entry(name, position, entry, lines) for position, entry in enumerate(entries)]
    explicit_at: dict[str, int] = {}
    for position, (_, _, class_id) in enumerate(specs):
        if class_id is None:
            continue
        if class_id in explicit_at:
            raise ClassSetError(
                f"{_where(name, position, lines)}: id {class_id!r} is already the id of "
                f"{_where(name, explicit_at[class_id], lines, short=True)}; class ids must be unique"
            )
        explicit_at[class_id] = position
    classes: list[ClassSpec] = []
    seen_ids: set[str] = set(explicit_at)
    next_suffix: dict[str, int] = {}  # per slug, where the search for a free 'slug-N' resumes
    for position, (label, explicit, class_id) in enumerate(specs):
        try:
            resolution = wordnet.resolve_label(label, explicit)
        except KeyError as exc:
            raise ClassSetError(f"{_where(name, position, lines)}: class {label!r}: {exc.args[0]}") from None
        if resolution.synset is None:
            log.warning("WordNet does not know %r; it will use class-name prompts only", label)
        elif resolution.ambiguous:
            log.info(
                "%r is ambiguous in WordNet; chose %s (pin a 'synset' to choose another)",
                label,
                resolution.synset,
            )
        if class_id is None:
            base = class_id = slugify(label)
            # the smallest free N, as a search from 2 would find (every smaller N is still taken),
            # without that search: 10,000 copies of one label took a minute
            n = next_suffix.get(base, 2)
            while class_id in seen_ids:
                class_id = f"{base}-{n}"
                n += 1
            next_suffix[base] = n
            seen_ids.add(class_id)
        classes.append(
            ClassSpec(
                id=class_id,
                name=label,
                synset=resolution.synset,
                ambiguous=resolution.ambiguous,
                alternatives=resolution.alternatives,
            )
        )
    templates = validate_template_set(templates, f"class set {name!r}")
    return ClassSet(name=name, classes=classes, description=description, templates=templates)


def _where(name: str, position: int, lines: Sequence[int] | None, short: bool = False) -> str:
    where = f"class #{position + 1}"
    if lines is not None and position < len(lines):
        where += f" (line {lines[position]})"
    return where if short else f"{where} of {name!r}"


def _checked_entry(name: str, position: int, entry, lines) -> tuple[str, str | None, str | None]:
    """(label, synset or None, explicit id or None), or a one-line ClassSetError naming the entry."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise ClassSetError(f"{_where(name, position, lines)} needs a non-empty 'name' (got a {type(entry).__name__})")
    label = entry.get("name")
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        label = str(label)  # YAML reads "- 1984" as a number
    if not isinstance(label, str) or not label.strip():
        raise ClassSetError(f"{_where(name, position, lines)} needs a non-empty 'name'")
    label = label.strip()
    if len(label) > MAX_LABEL_CHARS:
        raise ClassSetError(f"{_where(name, position, lines)}: the name is over {MAX_LABEL_CHARS} characters")
    values = {}
    for field_name in ("synset", "id"):
        value = entry.get(field_name)
        if value is not None and not isinstance(value, str):
            raise ClassSetError(
                f"{_where(name, position, lines)}: {field_name!r} must be text, not {type(value).__name__}"
            )
        values[field_name] = (value or "").strip() or None
        if values[field_name] is not None and len(values[field_name]) > MAX_LABEL_CHARS:
            raise ClassSetError(f"{_where(name, position, lines)}: the {field_name} is over {MAX_LABEL_CHARS} characters")
    return label, values["synset"], values["id"]


def _read_entries(path: Path) -> tuple[list, str, list[int] | None, str]:
    """(entries, description, line of each entry, template set) from a ``.txt``, ``.json`` or
    ``.yaml`` file."""
    suffix = path.suffix.lower()
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ClassSetError(f"{path}: over {MAX_FILE_BYTES // (1024 * 1024)} MiB; is it a class-set file?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ClassSetError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                            "save it as UTF-8") from None
    if suffix == ".txt":
        numbered = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        kept = [(n, line) for n, line in numbered if line and not line.startswith("#")]
        return [line for _, line in kept], "", [n for n, _ in kept], "openai"
    try:
        if suffix == ".json":
            data, lines = json.loads(text), _json_entry_lines(text)
        else:
            data, lines = _load_yaml(text)
    except ClassSetError as exc:
        raise ClassSetError(f"{path}: {exc.message}") from None
    except Exception as exc:  # JSONDecodeError, yaml.YAMLError, RecursionError for deep nesting
        raise ClassSetError(f"{path}: not valid {suffix[1:].upper()}: {_one_line(exc)}") from None
    description, templates = "", "openai"
    if isinstance(data, dict):
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ClassSetError(f"{path}: 'description' must be text")
        templates = data.get("templates") or "openai"
        if not isinstance(templates, str):
            raise ClassSetError(f"{path}: 'templates' must be text")
        data = data.get("classes")
    if not isinstance(data, list):
        raise ClassSetError(f"{path}: expected a list of classes or {{'classes': [...]}}")
    return data, description, lines, templates


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _load_yaml(text: str) -> tuple[object, list[int] | None]:
    """Safe YAML without aliases (no billion laughs); the line of each class entry."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                line = self.peek_event().start_mark.line + 1
                raise ClassSetError(f"line {line}: YAML aliases (*name) are not allowed in class-set files")
            return super().compose_node(parent, index)

    loader = NoAliasLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "classes"), None)
    lines = [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else None
    return data, lines


def _json_entry_lines(text: str) -> list[int] | None:
    """The line on which each class entry starts, for a JSON list or ``{"classes": [...]}`` (linear)."""
    try:
        return _scan_json_entry_lines(text)
    except (ValueError, IndexError):
        return None


def _scan_json_entry_lines(text: str) -> list[int] | None:
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    pos = ws.match(text, 0).end()
    if text.startswith("{", pos):
        pos = ws.match(text, pos + 1).end()
        while not text.startswith("}", pos):
            key, pos = decoder.raw_decode(text, pos)
            pos = ws.match(text, pos).end() + 1  # the ':'
            pos = ws.match(text, pos).end()
            if key == "classes":
                break
            _, pos = decoder.raw_decode(text, pos)
            pos = ws.match(text, pos).end()
            if text.startswith(",", pos):
                pos = ws.match(text, pos + 1).end()
        else:
            return None
    if not text.startswith("[", pos):
        return None
    lines, line, counted = [], 1, 0
    pos = ws.match(text, pos + 1).end()
    while not text.startswith("]", pos):
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        pos = ws.match(text, pos).end()
        if text.startswith(",", pos):
            pos = ws.match(text, pos + 1).end()
    return lines


def load_class_set(ref: str | Path) -> ClassSet:
    """A class set by built-in name or file path (``.txt``, ``.json``, ``.yaml``)."""
    ref_str = str(ref)
    if ref_str in BUILTIN_CLASS_SETS:
        return builtin_class_set(ref_str)
    path = Path(ref_str)
    if path.suffix.lower() in CUSTOM_SUFFIXES:
        if not path.is_file():
            raise ClassSetError(f"class set file {path} does not exist")
        if not is_valid_name(path.stem):
            raise ClassSetError(f"{path.name}: the file name names the class set; use {NAME_RULE} before the suffix")
        entries, description, lines, templates = _read_entries(path)
        validate_template_set(templates, str(path))
        return build_class_set(path.stem, entries, description, lines, templates)
    return builtin_class_set(ref_str)  # raises the "unknown class set" error


def iter_builtin() -> Iterable[ClassSet]:
    for name in BUILTIN_CLASS_SETS:
        yield builtin_class_set(name)
