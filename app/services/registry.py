"""The classifiers in use, held in memory so that a store outage never stops classification.

- Named class sets are loaded from the store on first use and kept; every ``refresh_s`` a
  background check picks up a newer active classifier written by a job on any replica (a failed
  check keeps the one in memory). A built-in set with no classifier for this model yet is built on
  demand with ``Settings.default_method`` and written to the store.
- Ad-hoc label sets are embedded with class-name templates (``Settings.label_templates``) on
  first use, written to the store and kept in a bounded LRU (``Settings.label_cache_size``); with
  the store down they are still built, just not shared. A request whose labels make more prompts
  than ``Settings.max_label_prompts`` is refused before any text is encoded.

Every build embeds on the shared text-encoder turns (:class:`~app.services.text_work.TextWork`).

Concurrent first requests for the same set share one load (single flight).

The registry also holds the open-set state of the classifiers it serves (:attr:`open_sets`,
:class:`~app.services.open_set_serving.OpenSetServing`): negatives and calibrations follow the
classifier key, so a new classifier is prepared afresh.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.prometheus_metrics import Metrics
from app.services.description_builds import describe
from app.services.model import ModelHolder
from app.services.open_set_serving import OpenSetServing
from app.services.service_errors import (
    ClassifierBroken,
    ClassSetNotFound,
    ClassSetNotReady,
    StoreUnavailable,
    TooManyLabelPrompts,
)
from app.services.text_work import TextWork
from gloss_gen.classify.adapter_records import get_active_adapter
from gloss_gen.classify.pair_embeddings import get_active_pair_embeddings
from gloss_gen.classify.pair_rerank import PairRerankError
from gloss_gen.classify.pipeline import build_and_store
from gloss_gen.classify.scoring import ScoringHead
from gloss_gen.core.config import Settings
from gloss_gen.core.errors import CorruptDataError
from gloss_gen.core.prompts import template_count
from gloss_gen.data.classifier import Classifier, ad_hoc_class_set, serves_labels
from gloss_gen.data.classsets import (
    BUILTIN_CLASS_SETS,
    ClassSet,
    ClassSetError,
    builtin_class_set,
    validate_class_set_name,
)
from gloss_gen.data.descriptions import DescriptionSet, describe_classname
from gloss_gen.data.store import Store, StoreError

log = logging.getLogger(__name__)

AD_HOC_NAME = re.compile(r"^labels-[0-9a-f]{12}$")
"""Names :func:`gloss_gen.data.classifier.ad_hoc_class_set` gives label sets; hidden from listings."""


def is_ad_hoc_name(name: str) -> bool:
    return bool(AD_HOC_NAME.match(name))


@dataclass(frozen=True)
class LoadedClassifier:
    classifier: Classifier
    head: ScoringHead
    adapter: object | None = None  # the gloss_gen.classify.adapter_records.AdapterRecord the head applies
    pairs: object | None = None  # the gloss_gen.classify.pair_embeddings.PairEmbeddings the head re-ranks with

    @property
    def name(self) -> str:
        return self.classifier.class_set.name


@dataclass
class _Slot:
    loaded: LoadedClassifier
    checked_at: float


class ClassifierRegistry:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        model: ModelHolder,
        metrics: Metrics,
        text_work: TextWork,
        refresh_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        self.metrics = metrics
        self.refresh_s = refresh_s
        self._text_work = text_work
        self.open_sets = OpenSetServing(settings, store, model, text_work, refresh_s)
        self._named: dict[str, _Slot] = {}
        self._labels: OrderedDict[str, LoadedClassifier] = OrderedDict()
        self._in_flight: dict[tuple[str, str], asyncio.Task] = {}
        self._waiters: dict[tuple[str, str], int] = {}  # requests awaiting each in-flight load
        self._refreshing: set[str] = set()
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lookups

    def loaded(self, name: str) -> LoadedClassifier | None:
        slot = self._named.get(name)
        return slot.loaded if slot else None

    def loaded_names(self) -> list[str]:
        return sorted(self._named)

    async def get_named(self, name: str) -> LoadedClassifier:
        slot = self._named.get(name)
        if slot is not None:
            if time.monotonic() - slot.checked_at >= self.refresh_s and name not in self._refreshing:
                self._refreshing.add(name)
                self._spawn(self._refresh(name))
            return slot.loaded
        try:
            validate_class_set_name(name)
        except ClassSetError:
            raise ClassSetNotFound(name) from None
        if is_ad_hoc_name(name):
            raise ClassSetNotFound(name)
        return await self._single_flight(("set", name), lambda: self._load_named(name))

    async def get_for_labels(self, labels: list[str]) -> LoadedClassifier:
        class_set = ad_hoc_class_set(labels, self.settings.label_templates)
        per_label = template_count(class_set.templates)
        if len(labels) * per_label > self.settings.max_label_prompts:
            raise TooManyLabelPrompts(len(labels), class_set.templates, per_label, self.settings.max_label_prompts)
        cached = self._labels.get(class_set.name)
        if cached is not None:
            self._labels.move_to_end(class_set.name)
            self.metrics.label_classifiers.labels(source="memory").inc()
            return cached
        return await self._single_flight(("labels", class_set.name), lambda: self._load_labels(class_set))

    # ------------------------------------------------------------------ installing

    def install(self, classifier: Classifier, adapter=None, pairs=None) -> LoadedClassifier:
        """Serve ``classifier`` (with a few-shot ``adapter`` and FuDD ``pairs``) for its class set from
        now on; an adapter or pairs that do not fit the classifier are logged and left out."""
        try:
            head = ScoringHead(classifier, self.model.device, adapter)
        except Exception as exc:
            if adapter is None:
                raise
            log.warning("class set %s: adapter %s cannot be applied (%s); serving zero-shot",
                        classifier.class_set.name, adapter.key, exc)
            adapter = None
            head = ScoringHead(classifier, self.model.device, None)
        if pairs is not None:
            try:
                head.attach_pairs(pairs)
            except PairRerankError as exc:
                log.warning("class set %s: %s; serving without the re-rank", classifier.class_set.name, exc.message)
                pairs = None
        loaded = LoadedClassifier(classifier, head, adapter, pairs)
        self._named[classifier.class_set.name] = _Slot(loaded, time.monotonic())
        return loaded

    async def build(
        self, description_set: DescriptionSet, *, write: bool = True, keep_on_store_error: bool = False
    ) -> Classifier:
        """Embed ``description_set`` in turns with the other builds and (with ``write``) store it as
        the active classifier of its set (see :func:`gloss_gen.classify.pipeline.build_and_store`)."""
        return await self._text_work.run(
            build_and_store, self.model.text_encoder, description_set, self.store if write else None,
            keep_on_store_error=keep_on_store_error,
        )

    # ------------------------------------------------------------------ loading

    async def _single_flight(
        self, key: tuple[str, str], load: Callable[[], Awaitable[LoadedClassifier]]
    ) -> LoadedClassifier:
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(load())
            self._in_flight[key] = task
            self._waiters[key] = 0

            def forget(_, key=key, task=task) -> None:
                if self._in_flight.get(key) is task:
                    del self._in_flight[key]
                    self._waiters.pop(key, None)

            task.add_done_callback(forget)
        # shielded: a client that goes away must not cancel a load other requests wait for; the
        # last one to go does (a build nobody waits for must not hold a text-work slot)
        self._waiters[key] += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._in_flight.get(key) is task:
                self._waiters[key] -= 1
                if self._waiters[key] == 0 and not task.done():
                    task.cancel()
            raise

    async def _load_named(self, name: str) -> LoadedClassifier:
        model_id = self.model.model_id
        try:
            try:
                classifier = await asyncio.to_thread(self.store.get_active_classifier, model_id, name)
            except CorruptDataError as exc:
                if name not in BUILTIN_CLASS_SETS:
                    raise ClassifierBroken(name, exc) from None
                log.warning("class set %s: %s (%s); rebuilding it", name, exc.message, exc.code)
                classifier = None
            if classifier is None and name not in BUILTIN_CLASS_SETS:
                if await asyncio.to_thread(self.store.get_class_set, name) is not None:
                    raise ClassSetNotReady(name, model_id)
                raise ClassSetNotFound(name)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if classifier is None:
            classifier = await self._build_builtin(name)
        adapter = await self._active_adapter(name, classifier)
        pairs = await self._active_pairs(name)
        log.info("serving class set %s (%d classes, descriptions %s, adapter %s, pairs %s)", name,
                 classifier.num_classes, classifier.descriptions_id, adapter.key if adapter else None,
                 pairs.key if pairs else None)
        return self.install(classifier, adapter, pairs)

    async def _active_pairs(self, name: str, loaded=None):
        try:
            return await asyncio.to_thread(get_active_pair_embeddings, self.store, self.model.model_id, name, loaded)
        except StoreError:
            log.warning("could not read the pair embeddings of %s; serving without the re-rank", name)
            return None
        except CorruptDataError as exc:  # damaged pairs never keep the class set from serving
            log.warning("class set %s: %s; serving without the re-rank", name, exc.message)
            return None

    async def _active_adapter(self, name: str, classifier: Classifier):

        try:
            return await asyncio.to_thread(get_active_adapter, self.store, self.model.model_id, name, classifier.key)
        except StoreError:
            log.warning("could not read the active adapter of %s; serving zero-shot", name)
            return None
        except Exception as exc:  # a damaged record or pointer never keeps the class set from serving
            log.warning("class set %s: the active adapter is damaged (%s); serving zero-shot", name,
                        getattr(exc, "message", None) or exc)
            return None

    async def _build_builtin(self, name: str) -> Classifier:
        method = self.settings.default_method
        log.info("no classifier for built-in %s with %s; building one with the %s method",
                 name, self.model.model_id, method)
        class_set = builtin_class_set(name)
        description_set = await describe(class_set, method, self.settings)
        return await self.build(description_set, keep_on_store_error=True)

    async def _load_labels(self, class_set: ClassSet) -> LoadedClassifier:
        model_id = self.model.model_id
        store_up = True
        try:
            classifier = await asyncio.to_thread(self.store.get_active_classifier, model_id, class_set.name)
        except CorruptDataError as exc:
            log.warning("labels %s: %s (%s); rebuilding them", class_set.name, exc.message, exc.code)
            classifier = None
        except StoreError:
            log.warning("store unavailable; embedding labels %s without it", class_set.name)
            classifier, store_up = None, False
        if classifier is not None and serves_labels(classifier, class_set):
            source = "store"
        else:
            classifier = await self.build(describe_classname(class_set), write=store_up, keep_on_store_error=True)
            source = "built"
        self.metrics.label_classifiers.labels(source=source).inc()
        loaded = LoadedClassifier(classifier, ScoringHead(classifier, self.model.device))
        self._labels[class_set.name] = loaded
        while len(self._labels) > self.settings.label_cache_size:
            self._labels.popitem(last=False)
        return loaded

    async def _refresh(self, name: str) -> None:
        """Pick up a newer active classifier for ``name``; keep the current one on any failure."""
        try:
            slot = self._named.get(name)
            if slot is None:
                return
            key = await asyncio.to_thread(self.store.get_active_key, self.model.model_id, name)
            if key is not None and key != slot.loaded.classifier.key:
                classifier = await asyncio.to_thread(self.store.get_classifier, key)
                if classifier is not None:
                    self.install(classifier, await self._active_adapter(name, classifier), await self._active_pairs(name))
                    log.info("class set %s now served by classifier %s", name, key)
                    return
            adapter = await self._active_adapter(name, slot.loaded.classifier)
            current = slot.loaded
            pairs = await self._active_pairs(name, current.pairs)
            if ((adapter and adapter.key) != (current.adapter and current.adapter.key)
                    or (pairs and pairs.key) != (current.pairs and current.pairs.key)):
                self.install(current.classifier, adapter, pairs)
                log.info("class set %s now served with adapter %s, pairs %s", name, adapter.key if adapter else None,
                         pairs.key if pairs else None)
                return
            slot.checked_at = time.monotonic()
        except (StoreError, CorruptDataError) as exc:
            log.warning("could not check the store for a newer %s classifier: %s", name, exc)
            slot = self._named.get(name)
            if slot is not None:
                slot.checked_at = time.monotonic()
        except Exception:
            log.exception("refreshing class set %s failed", name)
        finally:
            self._refreshing.discard(name)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background) + list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._background, *self._in_flight.values(), return_exceptions=True)
        await self.open_sets.close()
