"""Class sets as the API lists them: built-ins, every set in the store, and what is in memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from app.services.job_runner import JOB_KIND, JobRunner
from app.services.registry import ClassifierRegistry, is_ad_hoc_name
from app.services.service_errors import ClassSetNotFound, InvalidClassSet, StoreUnavailable
from gloss_gen.core.errors import CorruptDataError
from gloss_gen.core.names import is_valid_name
from gloss_gen.data.classifier import Classifier
from gloss_gen.data.classsets import (
    BUILTIN_CLASS_SETS,
    ClassSet,
    ClassSetError,
    build_class_set,
    builtin_class_set,
    validate_class_set_name,
)
from gloss_gen.data.store import Store, StoreError

log = logging.getLogger(__name__)


class ClassSetCatalog:
    def __init__(self, store: Store, registry: ClassifierRegistry, jobs: JobRunner, default_method: str) -> None:
        self.store = store
        self.registry = registry
        self.jobs = jobs
        self.default_method = default_method

    @property
    def model_id(self) -> str:
        return self.registry.model.model_id

    async def list(self) -> list[dict]:
        """One summary per class set (the fields of ``ClassSetSummary``)."""
        return await self._blocking(self._list)

    async def detail(self, name: str) -> dict:
        """A summary with the classes and their descriptions (the fields of ``ClassSetDetail``)."""
        return await self._blocking(self._detail, name)

    async def create(self, name: str, classes: Sequence[str | dict] | None, method: str | None,
                     description: str = "") -> str:
        """Validate the set (WordNet resolution included) and start its job; the job id."""
        try:
            validate_class_set_name(name)
        except ClassSetError as exc:
            raise InvalidClassSet(str(exc)) from None
        if is_ad_hoc_name(name):
            raise InvalidClassSet(f"Names like {name!r} are reserved for ad-hoc label sets.")
        if name in BUILTIN_CLASS_SETS:
            if classes:
                raise InvalidClassSet(f"{name!r} is a built-in class set; omit 'classes' to rebuild it.")
            class_set = builtin_class_set(name)
        else:
            if not classes:
                raise InvalidClassSet("Give the classes of the new set in 'classes'.")
            try:
                class_set = await asyncio.to_thread(build_class_set, name, list(classes), description)
            except ClassSetError as exc:
                raise InvalidClassSet(str(exc)) from None
        previous = await self._blocking(self.store.get_class_set, name)
        await self._blocking(self.store.put_class_set, class_set)
        try:
            return await self.jobs.submit(JOB_KIND, class_set, method or self.default_method, model=self.model_id)
        except BaseException:
            # refused (429 too_many_jobs) or failed: no set left stored waiting for a job that does not exist
            if previous is None:
                await self._blocking(self.store.delete_class_set, name)
            else:
                await self._blocking(self.store.put_class_set, previous)
            raise

    async def _blocking(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _list(self) -> list[dict]:
        stored = [n for n in self.store.class_set_names() if not is_ad_hoc_name(n)]
        names = set(BUILTIN_CLASS_SETS) | set(stored) | set(self.registry.loaded_names())
        active = self.store.active_class_sets(self.model_id)
        summaries = []
        for name in sorted(names):
            classifier, broken = self._checked_classifier(name, lambda: active.get(name))
            class_set = classifier.class_set if classifier else self._class_set(name)
            if class_set is not None:
                summaries.append(self._summary(name, class_set, classifier, broken))
        return summaries

    def _detail(self, name: str) -> dict:
        if not is_valid_name(name) or is_ad_hoc_name(name):
            raise ClassSetNotFound(name)
        classifier, broken = self._checked_classifier(name, lambda: self.store.get_active_key(self.model_id, name))
        class_set = classifier.class_set if classifier else self._class_set(name)
        if class_set is None:
            raise ClassSetNotFound(name)
        texts = self._descriptions(classifier) if classifier else {}
        classes = [
            {"id": c.id, "name": c.name, "synset": c.synset, "descriptions": texts.get(c.id, [])}
            for c in class_set.classes
        ]
        return {**self._summary(name, class_set, classifier, broken), "classes": classes}

    def _classifier(self, name: str, active_key: str | None) -> Classifier | None:
        loaded = self.registry.loaded(name)
        if loaded is not None and (active_key is None or loaded.classifier.key == active_key):
            return loaded.classifier
        return self.store.get_classifier(active_key) if active_key else None

    def _checked_classifier(self, name: str, active_key: Callable[[], str | None]
                            ) -> tuple[Classifier | None, dict | None]:
        """The classifier, or None and the error of a stored one that fails verification.

        A damaged entry marks its own set (``ready: false`` and ``error``), never the listing.
        """
        try:
            return self._classifier(name, active_key()), None
        except CorruptDataError as exc:
            log.warning("class set %s: %s (%s)", name, exc.message, exc.code)
            return None, {"code": exc.code, "message": f"The stored classifier is damaged: {exc.message}"}

    def _class_set(self, name: str) -> ClassSet | None:
        try:
            validate_class_set_name(name)
        except ClassSetError:
            return None
        class_set = self.store.get_class_set(name)
        if class_set is None and name in BUILTIN_CLASS_SETS:
            class_set = builtin_class_set(name)
        return class_set

    def _summary(self, name: str, class_set: ClassSet, classifier: Classifier | None,
                 error: dict | None = None) -> dict:
        marked = {} if error is None else {"error": error}  # the field is absent, not null, when fine
        return {
            "name": name,
            "num_classes": len(class_set),
            "descriptions": classifier.descriptions_id if classifier else None,
            "method": classifier.method if classifier else None,
            "model": self.model_id,
            "ready": classifier is not None,
            "builtin": name in BUILTIN_CLASS_SETS,
            **marked,
        }

    def _descriptions(self, classifier: Classifier) -> dict[str, list[str]]:
        """Class id -> descriptions, from the store's records, else from the classifier's evidence."""
        records = self.store.get_description_records(classifier.descriptions_id)
        if records is not None:
            return {r.class_id: list(r.descriptions) for r in records if r.ok}
        if classifier.prompt_style == "templates":
            return {}
        offsets = classifier.offsets
        return {
            class_id: classifier.evidence_texts[offsets[i] : offsets[i + 1]]
            for i, class_id in enumerate(classifier.class_set.ids)
        }
