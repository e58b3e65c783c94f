"""The FuDD describe job: differential descriptions for every pair of classes that can meet in a
top-k (:mod:`.pair_selection`), one JSON line per pair as each finishes, resumable.

Each pair is one LLM request (:func:`~gloss_gen.describe.llm.build_pair_messages`: both classes'
WordNet facts, N attributes asked for), parsed and sanitised by
:func:`~gloss_gen.describe.llm.extract_contrasts`, and written as a
:class:`~gloss_gen.data.pair_descriptions.PairRecord` (``attributes``, ``descriptions`` = each
side's sentences, provenance) with :class:`~gloss_gen.data.descriptions.JsonlWriter`. The client,
retry policy, bounded concurrency and callbacks are the describe job's
(:mod:`gloss_gen.describe.describe_job`): a pair the LLM could not answer after the retries is an
error line, and a re-run skips the pairs whose latest line succeeded and retries the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gloss_gen.data.classsets import ClassSet
from gloss_gen.data.descriptions import DescriptionError, JsonlWriter, utc_now
from gloss_gen.data.methods import get_method
from gloss_gen.data.pair_descriptions import Pair, PairRecord, read_pair_jsonl
from gloss_gen.describe.describe_job import (
    DescribeOptions,
    JobSummary,
    OnRecord,
    bounded_completed,
    new_client,
    notify,
)
from gloss_gen.describe.llm import (
    PAIR_PROMPT_VERSION,
    LLMError,
    build_pair_messages,
    class_facts,
    clip_token_count,
    endpoint_label,
    extract_contrasts,
    request_parsed,
)
from gloss_gen.describe.pair_selection import PairSelection, select_pairs

log = logging.getLogger(__name__)


@dataclass
class PairContext:
    """The pairs to describe and the facts of their classes (looked up once each)."""

    class_set: ClassSet
    options: DescribeOptions
    selection: PairSelection
    _facts: dict[int, Any] = field(default_factory=dict, repr=False)

    def facts(self, index: int):
        if index not in self._facts:
            self._facts[index] = class_facts(self.class_set.classes[index])
        return self._facts[index]

    def messages(self, pair: Pair) -> list[dict[str, str]]:
        """The chat messages for ``pair`` (class-set order: the first class is ``pair[0]``)."""
        return build_pair_messages(self.facts(pair[0]), self.facts(pair[1]), self.options.n_descriptions)

    def selected_by(self, pair: Pair) -> list[str]:
        return [name for name, pairs in (("confusables", self.selection.confusable),
                                         ("pairs_from", self.selection.met)) if pair in pairs]


def check_pair_method(method: str) -> None:
    if not get_method(method).writes_pairs:
        raise DescriptionError(f"method {method!r} writes one line per class, not per pair; use the describe job")


def prepare_pairs(class_set: ClassSet, options: DescribeOptions, pairs_from: str | Path | None = None,
                  max_pairs: int | None = None) -> PairContext:
    """The pairs to describe: confusables (``options.k_confusables``) plus ``pairs_from``'s."""
    check_pair_method(options.method)
    context = PairContext(class_set, options, select_pairs(class_set, options.k_confusables, pairs_from, max_pairs))
    clip_token_count("")  # load CLIP's tokenizer once here, not in every parsing thread at once
    return context


async def describe_pair(context: PairContext, pair: Pair, client=None) -> PairRecord:
    """Ask for the contrasts of one pair. LLM failures never raise: once retries are spent the
    record carries ``error``. ``client`` is shared across calls (one is made per call when omitted)."""
    options = context.options
    record = PairRecord.for_pair(context.class_set, *pair)
    record.method = options.method
    first, second = record.names
    provenance: dict[str, Any] = {
        "method": options.method,
        "prompt_version": PAIR_PROMPT_VERSION,
        "llm_model": options.llm_model,
        "n_requested": options.n_descriptions,
        "selected_by": context.selected_by(record.index),
    }
    own_client = client is None
    if own_client:
        client = new_client(options)
    try:
        provenance["llm_endpoint"] = endpoint_label(client)
        answer = await request_parsed(
            client,
            model=options.llm_model,
            messages=context.messages(record.index),
            label=f"{first} / {second}",
            parse=functools.partial(extract_contrasts, first_name=first, second_name=second,
                                    n=options.n_descriptions),
            policy=options.retry_policy,
            temperature=options.temperature,
        )
        record.attributes = [attribute for attribute, _, _ in answer.descriptions]
        record.descriptions = ([a for _, a, _ in answer.descriptions], [b for _, _, b in answer.descriptions])
        provenance.update(attempts=answer.attempts, response_model=answer.response_model,
                          elapsed_s=round(answer.elapsed_s, 3))
    except LLMError as exc:
        record.error = exc.reason
        provenance["attempts"] = exc.attempts
    except Exception as exc:  # a bug or an unforeseen client error must not stop the job
        log.exception("describing the pair %s / %s failed", first, second)
        record.error = f"unexpected error: {type(exc).__name__}: {exc}"
    finally:
        if own_client:
            await client.close()
    provenance["created_at"] = utc_now()
    record.provenance = provenance
    return record


@dataclass
class PairSummary(JobSummary):
    """The outcome of :func:`run_pair_job`."""

    unit = "pairs"
    selection: PairSelection | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # ("a / b" names, reason)

    def detail_lines(self) -> list[str]:
        return [f"  {self.selection.line()}"] if self.selection is not None else []

    def failure_line(self, failure: tuple) -> str:
        names, reason = failure
        return f"  failed: {names}: {reason}"


def finished_pairs(records: list[PairRecord], class_set: ClassSet, method: str, path: Path) -> set[Pair]:
    """Pairs whose latest line in ``records`` is a success of ``method``; a line of another class
    set is refused (its indices would name other classes)."""
    latest: dict[Pair, PairRecord] = {}
    for record in records:
        i, j = record.index
        if j >= len(class_set) or (class_set.classes[i].id, class_set.classes[j].id) != record.class_ids:
            raise DescriptionError(f"{path} holds pairs of another class set ({record.class_set}); "
                                   "write this one to another file (--out)")
        latest[record.index] = record
    return {pair for pair, record in latest.items() if record.ok and record.method == method}


async def run_pair_job(
    class_set: ClassSet,
    options: DescribeOptions,
    out_path: str | Path,
    *,
    pairs_from: str | Path | None = None,
    max_pairs: int | None = None,
    progress: bool = True,
    on_record: OnRecord | None = None,
) -> PairSummary:
    """Describe every selected pair not yet finished in ``out_path``, appending one line per pair
    as it finishes (fsynced). ``on_record(record, done, total)`` is called after each line."""
    from tqdm.auto import tqdm

    check_pair_method(options.method)
    started = time.monotonic()
    out_path = Path(out_path)
    previous = read_pair_jsonl(out_path) if out_path.is_file() else []
    finished = finished_pairs(previous, class_set, options.method, out_path)
    context = await asyncio.to_thread(prepare_pairs, class_set, options, pairs_from, max_pairs)
    todo = [pair for pair in context.selection.pairs if pair not in finished]
    total = len(context.selection.pairs)
    summary = PairSummary(class_set=class_set.name, method=options.method, out_path=out_path, total=total,
                          selection=context.selection, skipped=total - len(todo))
    if todo:
        client = new_client(options)  # a missing API key fails here, before any output
        bar = tqdm(total=total, initial=summary.skipped, unit="pair", disable=not progress,
                   desc=f"describe {class_set.name} ({options.method})", dynamic_ncols=True)
        try:
            with JsonlWriter(out_path) as writer:
                work = functools.partial(describe_pair, context, client=client)
                async for record in bounded_completed(work, todo, options.concurrency):
                    await asyncio.to_thread(writer.write, record)
                    if record.ok:
                        summary.described += 1
                    else:
                        summary.failures.append((" / ".join(record.names), record.error or ""))
                    bar.update(1)
                    bar.set_postfix(done=summary.skipped + summary.described, failed=summary.failed)
                    await notify(on_record, record, summary.skipped + summary.described + summary.failed, total)
        finally:
            bar.close()
            await client.close()
    summary.elapsed_s = time.monotonic() - started
    return summary
