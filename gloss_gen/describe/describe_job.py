"""The describe job: descriptions for every class of a class set, one JSON line per class as each
finishes, resumable, with bounded LLM concurrency.

Public API (stable; queue workers and the REST server's class-set jobs call it):

- :class:`DescribeOptions` — what to generate and how (method, LLM model, N, K, limits).
- :func:`prepare` — per class set, once: confusable classes (``vgloss``) or the offline
  description set (``classname``, ``wordnet``, ``import``). Cheap enough to rebuild in every
  worker process (ImageNet-1k: a few seconds, most of it loading WordNet).
- :func:`describe_one` — one class → one :class:`DescriptionRecord`. Never raises for LLM
  failures: after the retries it returns a record with ``error`` set.
- :func:`run_describe_job` — the whole set into a JSONL file. A re-run skips classes whose latest
  line succeeded (resume after a crash or Ctrl-C) and retries error lines.
- :func:`generate_descriptions` — the whole set in memory, as a :class:`DescriptionSet`.

Methods that write pairs (``fudd``) have their own job, :mod:`gloss_gen.describe.pair_job`, built on
this one's client, retry policy, bounded concurrency (:func:`bounded_completed`) and callbacks.

The LLM side (prompt, parsing, retries) is :mod:`gloss_gen.describe.llm`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gloss_gen.core.config import get_settings
from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.description_importers import ImportReport
from gloss_gen.data.descriptions import (
    VGLOSS_STYLES,
    DescriptionError,
    DescriptionRecord,
    DescriptionSet,
    JsonlWriter,
    assemble,
    latest_by_class,
    read_jsonl,
    utc_now,
)
from gloss_gen.data.methods import describe_offline, get_method
from gloss_gen.describe.llm import (
    PROMPT_VERSIONS,
    LLMError,
    RetryPolicy,
    build_messages,
    class_facts,
    endpoint_label,
    find_confusables,
    make_client,
    request_descriptions,
)

log = logging.getLogger(__name__)

IMPORT_FORMATS = ("auto", "cupl", "dclip")

OnRecord = Callable[[DescriptionRecord, int, int], Awaitable[Any] | Any]
Item = TypeVar("Item")
Done = TypeVar("Done")


@dataclass
class DescribeOptions:
    """What the describe job generates and how.

    ``llm_model``, ``concurrency``, ``timeout`` (seconds per LLM request) and ``max_retries``
    default to the ``Settings`` defaults; :meth:`from_settings` takes them from a ``Settings``.
    ``base_url``/``api_key`` default to ``OPENAI_BASE_URL``/``OPENAI_API_KEY``.
    """

    method: str
    llm_model: str = "gpt-4o-mini"
    style: str = "phrases"  # vgloss: phrases or gloss (gloss_gen.describe.llm.VGLOSS_STYLES)
    n_descriptions: int = 5
    k_confusables: int = 5
    import_file: str | None = None
    import_format: str = "auto"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 5
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float | None = None  # None: the endpoint's default
    retry_base_delay: float = 0.5
    retry_max_delay: float = 30.0

    def __post_init__(self) -> None:
        method = get_method(self.method)
        if method.needs_file and not self.import_file:
            raise DescriptionError(f"the {self.method} method needs an import file (--import FILE)")
        if not method.needs_file and self.import_file:
            raise DescriptionError(f"an import file is only read by --method import, not {self.method}")
        if self.style not in VGLOSS_STYLES:
            raise DescriptionError(f"unknown vgloss style {self.style!r}; choose from {', '.join(VGLOSS_STYLES)}")
        if self.import_format not in IMPORT_FORMATS:
            raise DescriptionError(
                f"unknown import format {self.import_format!r}; choose from {', '.join(IMPORT_FORMATS)}"
            )
        for name, low in (("n_descriptions", 1), ("k_confusables", 0), ("concurrency", 1), ("max_retries", 0)):
            if int(getattr(self, name)) < low:
                raise DescriptionError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if not self.timeout > 0:
            raise DescriptionError(f"timeout must be positive, got {self.timeout}")
        if self.import_file is not None:
            self.import_file = str(self.import_file)

    @classmethod
    def from_settings(cls, method: str, settings=None, **overrides: Any) -> DescribeOptions:
        """Options with the LLM defaults of ``settings`` (``get_settings()`` when omitted);
        overrides that are ``None`` are ignored, so CLI flags can be passed straight through."""

        s = settings or get_settings()
        values: dict[str, Any] = {
            "llm_model": s.llm_model,
            "concurrency": s.llm_concurrency,
            "timeout": s.llm_timeout_s,
            "max_retries": s.llm_max_retries,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(method=method, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able options for a queue payload. The API key is left out: workers read their
        own ``OPENAI_API_KEY``."""
        data = dataclasses.asdict(self)
        data.pop("api_key")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DescribeOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def retry_policy(self):

        return RetryPolicy(
            max_retries=self.max_retries,
            base_delay_s=self.retry_base_delay,
            max_delay_s=self.retry_max_delay,
        )


@dataclass
class DescribeContext:
    """Everything :func:`describe_one` needs about a class set, computed once by :func:`prepare`."""

    class_set: ClassSet
    options: DescribeOptions
    prompt_style: str
    confusables: list[list[int]] = field(default_factory=list)  # vgloss: indices, nearest first
    offline: DescriptionSet | None = None  # classname / wordnet / import: the finished set
    import_report: ImportReport | None = None
    _facts: dict[int, Any] = field(default_factory=dict, repr=False)

    def facts(self, index: int):
        """The :class:`gloss_gen.describe.llm.ClassFacts` of class ``index`` (looked up once)."""

        if index not in self._facts:
            self._facts[index] = class_facts(self.class_set.classes[index])
        return self._facts[index]

    def messages(self, index: int) -> list[dict[str, str]]:
        """The chat messages the ``vgloss`` method sends for class ``index``."""

        others = [self.facts(j) for j in self.confusables[index]] if self.confusables else []
        return build_messages(self.facts(index), others, self.options.n_descriptions, self.options.style)


def prepare(class_set: ClassSet, options: DescribeOptions) -> DescribeContext:
    """Per-class-set work done once: the confusables of every class (``vgloss``, vectorised
    Wu-Palmer, under a second for ImageNet-1k once WordNet is loaded) or the offline set."""
    refuse_pair_method(options.method)
    if get_method(options.method).needs_llm:

        return DescribeContext(
            class_set=class_set,
            options=options,
            prompt_style=VGLOSS_STYLES[options.style],
            confusables=find_confusables(class_set, options.k_confusables),
        )
    offline, report = describe_offline(
        class_set, options.method, import_file=options.import_file, import_format=options.import_format
    )
    return DescribeContext(class_set, options, offline.prompt_style, offline=offline, import_report=report)


def refuse_pair_method(method: str) -> None:
    """Pair methods (``fudd``) write pair lines through :mod:`gloss_gen.describe.pair_job`, not here."""
    if get_method(method).writes_pairs:
        raise DescriptionError(
            f"method {method!r} writes pair descriptions, one line per pair of classes: "
            f"run `vgloss describe CLASS_SET --method {method}` (gloss_gen.describe.pair_job)"
        )


def new_client(options: DescribeOptions):
    """An OpenAI-compatible client for ``options`` (endpoint, key, timeout; no client retries)."""

    return make_client(base_url=options.base_url, api_key=options.api_key, timeout=options.timeout)


async def describe_one(context: DescribeContext, index: int, client=None) -> DescriptionRecord:
    """Describe class ``index`` of the context's class set.

    ``client`` is an ``openai.AsyncOpenAI`` to share across calls (one is made and closed per
    call when omitted). LLM failures never raise: once retries are spent the record carries
    ``error`` and no descriptions. A missing API key raises :class:`gloss_gen.describe.llm.LLMConfigError`.
    """
    if context.offline is not None:
        done = context.offline.records[index]
        return dataclasses.replace(done, descriptions=list(done.descriptions),
                                   provenance=dict(done.provenance))

    options = context.options
    spec = context.class_set.classes[index]
    record = DescriptionRecord.for_class(spec, context.class_set, index, "vgloss")
    provenance: dict[str, Any] = {
        "method": "vgloss",
        "prompt_version": PROMPT_VERSIONS[options.style],
        "vgloss_style": options.style,
        "prompt_style": context.prompt_style,
        "llm_model": options.llm_model,
        "n_requested": options.n_descriptions,
        "confusables": [context.class_set.classes[j].name for j in context.confusables[index]]
        if context.confusables else [],
    }
    own_client = client is None
    if own_client:
        client = new_client(options)
    try:
        provenance["llm_endpoint"] = endpoint_label(client)
        answer = await request_descriptions(
            client,
            model=options.llm_model,
            messages=context.messages(index),
            class_name=spec.name,
            n=options.n_descriptions,
            style=options.style,
            policy=options.retry_policy,
            temperature=options.temperature,
        )
        record.descriptions = answer.descriptions
        provenance.update(
            attempts=answer.attempts,
            response_model=answer.response_model,
            elapsed_s=round(answer.elapsed_s, 3),
        )
    except LLMError as exc:
        record.error = exc.reason
        provenance["attempts"] = exc.attempts
    except Exception as exc:  # a bug or an unforeseen client error must not stop the job
        log.exception("describing %s failed", spec.name)
        record.error = f"unexpected error: {type(exc).__name__}: {exc}"
    finally:
        if own_client:
            await client.close()
    provenance["created_at"] = utc_now()
    record.provenance = provenance
    return record


@asynccontextmanager
async def _client_for(context: DescribeContext) -> AsyncIterator[Any]:
    if context.offline is not None:
        yield None
        return
    client = new_client(context.options)
    try:
        yield client
    finally:
        await client.close()


async def bounded_completed(work: Callable[[Item], Awaitable[Done]], items: Iterable[Item],
                            concurrency: int) -> AsyncIterator[Done]:
    """``work(item)`` for every item, results in completion order, at most ``concurrency`` in
    flight; leaving the loop early cancels what is still running."""
    limit = asyncio.Semaphore(concurrency)

    async def bounded(item: Item) -> Done:
        async with limit:
            return await work(item)

    tasks = [asyncio.ensure_future(bounded(item)) for item in items]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _describe_many(context: DescribeContext, indices: Iterable[int], client) -> AsyncIterator[DescriptionRecord]:
    """Records in completion order, at most ``options.concurrency`` classes in flight."""
    return bounded_completed(lambda index: describe_one(context, index, client), indices,
                             context.options.concurrency)


async def notify(on_record: Callable[[Any, int, int], Any] | None, record: Any, done: int, total: int) -> None:
    """Call ``on_record(record, done, total)``, awaiting it when it is a coroutine function."""
    if on_record is not None:
        result = on_record(record, done, total)
        if inspect.isawaitable(result):
            await result


@dataclass
class JobSummary:
    """The outcome of a describe job, per unit (classes, or pairs for :mod:`.pair_job`)."""

    class_set: str
    method: str
    out_path: Path | None
    total: int
    skipped: int = 0  # finished by an earlier run
    described: int = 0  # finished by this run
    elapsed_s: float = 0.0

    unit = "classes"  # what the job describes; subclasses add ``failures``, one tuple a failure

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def detail_lines(self) -> list[str]:
        """Lines between the count and the failures."""
        return []

    def failure_line(self, failure: tuple) -> str:
        raise NotImplementedError

    def lines(self, max_failures: int = 10) -> list[str]:
        done = self.skipped + self.described
        where = f" -> {self.out_path}" if self.out_path else ""
        out = [f"{self.class_set} ({self.method}): {done}/{self.total} {self.unit} described ({self.described} in "
               f"this run, {self.skipped} already done), {self.failed} failed, {self.elapsed_s:.1f}s{where}"]
        out += self.detail_lines()
        out += [self.failure_line(failure) for failure in self.failures[:max_failures]]
        if self.failed > max_failures:
            out.append(f"  ... and {self.failed - max_failures} more")
        if self.failures:
            out.append(f"Re-run the same command to retry the failed {self.unit}.")
        return out


@dataclass
class DescribeSummary(JobSummary):
    """The outcome of :func:`run_describe_job`."""

    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (class id, name, reason)
    import_report: ImportReport | None = None

    def failure_line(self, failure: tuple) -> str:
        class_id, name, reason = failure
        return f"  failed: {name} ({class_id}): {reason}"


def finished_class_ids(records: Iterable[DescriptionRecord], class_set: ClassSet, method: str) -> set[str]:
    """Classes of ``class_set`` whose latest line is a success of ``method``."""
    wanted = set(class_set.ids)
    return {
        class_id
        for class_id, record in latest_by_class(records).items()
        if class_id in wanted and record.ok and record.method == method
    }


def _refuse_other_style(records: list[DescriptionRecord], finished: set[str], style: str, path: Path) -> None:
    """One file, one vgloss style: resuming phrases with glosses would embed both one way."""
    others = {r.provenance.get("vgloss_style", "phrases") for r in records if r.class_id in finished and r.ok}
    others.discard(style)
    if others:
        raise DescriptionError(
            f"{path} holds vgloss descriptions in the {others.pop()} style, not {style}; "
            "write this style to another file (--out)"
        )


async def run_describe_job(
    class_set: ClassSet,
    options: DescribeOptions,
    out_path: str | Path,
    *,
    progress: bool = True,
    on_record: OnRecord | None = None,
) -> DescribeSummary:
    """Describe every class not yet finished in ``out_path``, appending one line per class as it
    finishes (fsynced, so a crash loses at most the line being written).

    ``on_record(record, done, total)`` is called after each line is written (``done`` counts
    classes finished earlier too); it may be a coroutine function.
    """
    from tqdm.auto import tqdm

    refuse_pair_method(options.method)
    started = time.monotonic()
    out_path = Path(out_path)
    previous = read_jsonl(out_path) if out_path.is_file() else []
    finished = finished_class_ids(previous, class_set, options.method)
    if options.method == "vgloss":
        _refuse_other_style(previous, finished, options.style, out_path)
    todo = [i for i, spec in enumerate(class_set.classes) if spec.id not in finished]
    total = len(class_set)
    summary = DescribeSummary(
        class_set=class_set.name,
        method=options.method,
        out_path=out_path,
        total=total,
        skipped=total - len(todo),
    )
    if todo:
        context = await asyncio.to_thread(prepare, class_set, options)
        summary.import_report = context.import_report
        async with _client_for(context) as client:  # a missing API key fails here, before any output
            bar = tqdm(total=total, initial=summary.skipped, unit="class", disable=not progress,
                       desc=f"describe {class_set.name} ({options.method})", dynamic_ncols=True)
            try:
                with JsonlWriter(out_path) as writer:
                    async for record in _describe_many(context, todo, client):
                        # fsync off the event loop, so responses keep flowing while the disk syncs
                        await asyncio.to_thread(writer.write, record)
                        if record.ok:
                            summary.described += 1
                        else:
                            summary.failures.append((record.class_id, record.name, record.error or ""))
                        bar.update(1)
                        bar.set_postfix(done=summary.skipped + summary.described, failed=summary.failed)
                        processed = summary.skipped + summary.described + summary.failed
                        await notify(on_record, record, processed, total)
            finally:
                bar.close()
    summary.elapsed_s = time.monotonic() - started
    return summary


async def generate_descriptions(
    class_set: ClassSet,
    options: DescribeOptions,
    *,
    on_record: OnRecord | None = None,
) -> DescriptionSet:
    """Describe every class in memory (no file) and return the set in class-set order. Classes
    that failed are error records in it (see :attr:`DescriptionSet.failed`)."""
    context = await asyncio.to_thread(prepare, class_set, options)
    total = len(class_set)
    records: list[DescriptionRecord] = []
    async with _client_for(context) as client:
        async for record in _describe_many(context, range(total), client):
            records.append(record)
            await notify(on_record, record, len(records), total)
    return assemble(class_set, records, method=options.method, prompt_style=context.prompt_style)
