"""WordNet 3.0 access through NLTK: locating the corpus, resolving labels to synsets, and the
facts the description methods need (lemmas, definition, hypernyms, similarity).

NLTK reads WordNet only from an NLTK data root laid out as ``corpora/wordnet/``. Debian's
``wordnet-base`` package installs the raw database under ``/usr/share/wordnet`` without the
``lexnames`` file NLTK needs; :func:`setup_nltk_wordnet` lays out a data root from it.
``python -m gloss_gen.data.wordnet --setup DIR`` does the same from the command line (the Docker image
runs it at build time).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gloss_gen.core.config import get_settings
from gloss_gen.core.errors import ConfigError

log = logging.getLogger(__name__)

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# The 45 lexicographer files of WordNet 3.0, in file-number order (see `man 5 lexnames`).
# The third field is the syntactic category: 1 noun, 2 verb, 3 adjective, 4 adverb.
LEXNAMES = [
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1),
    ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1),
    ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1),
    ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2),
    ("verb.competition", 2), ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2),
    ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2), ("verb.possession", 2),
    ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2), ("adj.ppl", 3),
]

_REQUIRED_FILES = ["data.noun", "index.noun", "noun.exc", "data.verb", "index.verb", "index.sense"]

MISSING_WORDNET_HELP = (
    "WordNet 3.0 was not found. Install it with `apt-get install wordnet-base wordnet-sense-index` "
    "(it is laid out for NLTK automatically), or run `python -m nltk.downloader wordnet`, or point "
    "VGLOSS_NLTK_DATA at an NLTK data root that holds corpora/wordnet."
)


class WordNetMissingError(ConfigError):
    """WordNet cannot be found anywhere; the message names the fix."""

    code = "wordnet_missing"

    def __init__(self, message: str = MISSING_WORDNET_HELP):
        super().__init__(message)


def setup_nltk_wordnet(target_root: Path, source: Path = DEBIAN_WORDNET_DIR) -> Path:
    """Lay out ``target_root/corpora/wordnet`` from a raw WordNet 3.0 database directory.

    Files are copied (NLTK's path sandbox resolves symlinks and refuses targets outside its data
    roots) and a ``lexnames`` file is written. Returns the corpus directory. Idempotent.
    """
    source = Path(source)
    missing = [name for name in _REQUIRED_FILES if not (source / name).is_file()]
    if missing:
        raise WordNetMissingError(
            f"{source} does not hold a WordNet 3.0 database (missing {', '.join(missing)}). "
            + MISSING_WORDNET_HELP
        )
    corpus = Path(target_root) / "corpora" / "wordnet"
    corpus.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if not item.is_file():
            continue
        dest = corpus / item.name
        if dest.exists() and dest.stat().st_size == item.stat().st_size:
            continue
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(item, tmp)
        os.replace(tmp, dest)
    lexnames = corpus / "lexnames"
    if not lexnames.exists():
        tmp = corpus / "lexnames.tmp"
        tmp.write_text(
            "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))
        )
        os.replace(tmp, lexnames)
    return corpus


def _candidate_roots(extra: Path | None) -> list[Path]:
    roots: list[Path] = []
    if extra:
        roots.append(Path(extra))
    if os.environ.get("VGLOSS_NLTK_DATA"):
        roots.append(Path(os.environ["VGLOSS_NLTK_DATA"]))
    try:
        import nltk

        roots.extend(Path(p) for p in nltk.data.path)
    except ImportError:  # pragma: no cover - nltk is a hard dependency
        pass
    return roots


def find_wordnet_corpus(nltk_data: Path | None = None, data_dir: Path | None = None) -> Path:
    """Return a directory NLTK can read WordNet from, laying one out from Debian's files if needed."""
    for root in _candidate_roots(nltk_data):
        corpus = root / "corpora" / "wordnet"
        if (corpus / "lexnames").is_file() and (corpus / "data.noun").is_file():
            return corpus
    if DEBIAN_WORDNET_DIR.is_dir():

        target = Path(nltk_data) if nltk_data else Path(data_dir or get_settings().data_dir) / "nltk_data"
        try:
            return setup_nltk_wordnet(target)
        except OSError as exc:
            raise WordNetMissingError(
                f"Could not lay out WordNet for NLTK under {target}: {exc}. " + MISSING_WORDNET_HELP
            ) from exc
    raise WordNetMissingError()


_reader = None
_reader_lock = threading.Lock()


def get_wordnet(nltk_data: Path | None = None):
    """The process-wide NLTK ``WordNetCorpusReader`` (loaded once, thread-safe)."""
    global _reader
    if _reader is None:
        with _reader_lock:
            if _reader is None:
                import warnings

                import nltk
                from nltk.corpus.reader.wordnet import WordNetCorpusReader

                corpus = find_wordnet_corpus(nltk_data)
                data_root = str(corpus.parent.parent)
                if data_root not in nltk.data.path:
                    nltk.data.path.append(data_root)  # NLTK only reads below its data roots
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "multilingual functions are not available"
                    _reader = WordNetCorpusReader(str(corpus), None)
    return _reader


# --------------------------------------------------------------------------- synsets

_OFFSET_RE = re.compile(r"^([nvars])(\d{8})$")
_NAME_RE = re.compile(r"^.+\.[nvars]\.\d{2}$")


def synset_id(synset) -> str:
    """The wnid form of a synset: ``n01440764``."""
    return f"{synset.pos()}{synset.offset():08d}"


def get_synset(ref: str):
    """A synset by wnid (``n01440764``) or name (``tench.n.01``); ``KeyError`` if unknown."""
    wn = get_wordnet()
    ref = ref.strip()
    match = _OFFSET_RE.match(ref)
    found = None
    try:
        if match:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nltk warns, then returns None, for a bad offset
                found = wn.synset_from_pos_and_offset(match.group(1), int(match.group(2)))
        elif _NAME_RE.match(ref):
            found = wn.synset(ref)
    except Exception as exc:  # nltk raises WordNetError / ValueError for unknown ids
        raise KeyError(f"unknown WordNet synset {ref!r}") from exc
    if found is not None:
        return found
    if match or _NAME_RE.match(ref):
        raise KeyError(f"unknown WordNet synset {ref!r}")
    raise KeyError(f"{ref!r} is neither a wnid like n01440764 nor a synset name like tench.n.01")


@dataclass
class SynsetResolution:
    """The outcome of mapping a free-text label to a WordNet noun synset."""

    label: str
    synset: str | None  # wnid of the chosen sense, None when WordNet does not know the label
    ambiguous: bool = False
    alternatives: list[dict] = field(default_factory=list)  # other senses: {synset, name, definition}
    pinned: bool = False  # the user gave the synset explicitly


def _label_forms(label: str) -> list[str]:
    base = re.sub(r"\s+", "_", label.strip().lower())
    forms = [base, base.replace("-", "_"), base.replace("_", "")]
    return list(dict.fromkeys(f for f in forms if f))


def resolve_label(label: str, synset: str | None = None) -> SynsetResolution:
    """Map a class label to a noun synset.

    An explicit ``synset`` always wins. Otherwise the label is looked up (spaces → underscores,
    lemmatised by WordNet's morphy) and the most common noun sense is picked; the other senses are
    recorded and ``ambiguous`` is set when there is more than one.
    """
    if synset:
        chosen = get_synset(synset)
        return SynsetResolution(label=label, synset=synset_id(chosen), pinned=True)
    wn = get_wordnet()
    senses = []
    for form in _label_forms(label):
        senses = wn.synsets(form, pos="n")
        if senses:
            break
    if not senses:
        return SynsetResolution(label=label, synset=None)
    # wn.synsets orders senses by frequency (sense number). Named instances ("Crane" the poet)
    # are never what an image class means, so a common noun sense is preferred to them.
    concrete = [s for s in senses if not s.instance_hypernyms()] or senses
    chosen = concrete[0]
    others = [s for s in senses if s != chosen]
    return SynsetResolution(
        label=label,
        synset=synset_id(chosen),
        ambiguous=bool(others),
        alternatives=[
            {"synset": synset_id(s), "name": s.name(), "definition": s.definition()} for s in others
        ],
    )


def display_name(synset) -> str:
    return synset.lemmas()[0].name().replace("_", " ")


def hypernym_chain(synset, levels: int = 2) -> list:
    """The first hypernym path upwards, ``levels`` steps (instance hypernyms count); of several
    parents the first by name, since NLTK lists them in an order that changes with ``PYTHONHASHSEED``
    (dog: canine or domestic animal), which would make prompts differ between processes."""
    chain = []
    current = synset
    for _ in range(levels):
        parents = current.hypernyms() or current.instance_hypernyms()
        if not parents:
            break
        current = min(parents, key=lambda parent: parent.name())
        chain.append(current)
    return chain


def similarity(a, b) -> float:
    """Wu-Palmer similarity of two synsets, 0.0 when undefined."""
    try:
        value = a.wup_similarity(b)
    except Exception:  # pragma: no cover - nltk edge cases on mixed POS
        value = None
    return float(value or 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gloss_gen.data.wordnet",
        description="Lay out an NLTK data root (DIR/corpora/wordnet) from Debian's WordNet 3.0.",
    )
    parser.add_argument("--setup", metavar="DIR", type=Path, required=True, help="NLTK data root")
    parser.add_argument("--source", type=Path, default=DEBIAN_WORDNET_DIR, help="raw WordNet dir")
    args = parser.parse_args(argv)
    try:
        corpus = setup_nltk_wordnet(args.setup, args.source)
    except WordNetMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(corpus)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
