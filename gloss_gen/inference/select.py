"""Choosing the inference path(s) for a model: the factory hook ``attach_engine``.

``VGLOSS_BACKEND`` x ``VGLOSS_PRECISION`` name the candidate paths (``auto`` matches any). One
candidate is *forced*: it is built and, unless it is the fp32 reference, gated; a gate failure
warns with the figure and it still runs, as asked. Several candidates are *auto*: they are timed
at batch 1 and ``VGLOSS_MAX_BATCH`` (images) and at ``TEXT_BATCH`` (prompts), and each batch size
gets the fastest path that passes the fidelity gate (only the paths that would win are gated).
The timings and gate figures are cached in the data dir, so the next start only builds the winners.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch

from gloss_gen.core.config import _default_data_dir
from gloss_gen.core.errors import ConfigError
from gloss_gen.data.store import Store, open_store
from gloss_gen.inference.engine import InferenceEngine, Route
from gloss_gen.inference.fidelity import (
    GATE_CLASSES,
    GATE_IMAGES,
    GATE_PROMPTS,
    MAX_BATCH_DRIFT,
    MIN_COSINE,
    MIN_TOP1,
    GateResult,
    batch_drift,
    compare,
    gate_pixels,
    gate_prompts,
    run_in_batches,
)
from gloss_gen.inference.graph_export import GraphCache, library_versions
from gloss_gen.inference.paths import PATHS, REFERENCE, BuildContext, PathSpec, candidates
from gloss_gen.inference.probe import (
    PROBE_FORMAT,
    ProbeCancelled,
    ProbeRecords,
    cpu_signature,
    probe_key,
    probe_tower,
)
from gloss_gen.inference.runners import Runner

log = logging.getLogger(__name__)

TEXT_BATCH = 64
GATE_BATCH = 32
DRIFT_BATCH = 8  # inputs run alone and together for the batch-invariance check


class ProbeBudgetSpent(Exception):
    """The probe's time budget ran out; what was measured so far decides."""
LIBRARIES = ("torch", "open_clip_torch", "onnx", "onnxruntime", "openvino")


def attach_engine(clip, settings, probe: bool = False, store=None, cancel: threading.Event | None = None,
                  progress: Callable[[str], None] | None = None, remeasure: bool = False) -> InferenceEngine | None:
    """Select the inference path(s) for ``clip`` under ``settings`` and attach them as
    ``clip.engine`` (``None``: today's eager path on the model's own device and dtype).

    With several candidate paths (``auto``) a cached probe decision is used when there is one.
    Without one, ``probe=False`` (every CLI verb, the server's start-up) attaches the fp32
    reference at once and names the paths still to be measured (``engine.pending``); ``probe=True``
    (``vgloss probe``, the server's background probe) measures them within
    ``settings.probe_budget_s`` and caches the decision in ``store`` (default: the settings' store).
    ``cancel`` stops a probe between two timed calls (:class:`ProbeCancelled`); ``remeasure``
    ignores a cached decision.
    """
    backend = getattr(settings, "backend", "auto")
    precision = settings.precision
    if clip.device.type != "cpu":
        if backend not in ("auto", "torch"):
            raise ConfigError(f"VGLOSS_BACKEND={backend} runs on the CPU only; use VGLOSS_DEVICE=cpu or backend torch")
        return None
    specs = candidates(backend, precision)
    if not specs:
        known = ", ".join(PATHS)
        raise ConfigError(f"no inference path is {backend}/{precision}; known paths: {known}")
    selector = Selector(clip, specs, settings, store=store, cancel=cancel, progress=progress)
    clip.engine = selector.select(probe, remeasure)
    return clip.engine


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def worth_probing(specs: list[PathSpec], flags: set[str]) -> tuple[list[PathSpec], dict[str, str]]:
    """The candidates ``auto`` measures, and why the others are skipped: paths that are not
    batch-invariant (the gate would refuse them) and paths this CPU has no instructions for."""
    kept, skipped = [], {}
    for spec in specs:
        if not spec.available:
            skipped[spec.name] = f"not installed (pip install 'vgloss[{spec.requires[1]}]')"
        elif not spec.batch_invariant:
            skipped[spec.name] = "not batch-invariant (an image's scores would depend on its batch); name it to use it"
        elif spec.cpu_flags and not flags & set(spec.cpu_flags):
            skipped[spec.name] = f"this CPU has none of {', '.join(spec.cpu_flags)}"
        else:
            kept.append(spec)
    return kept, skipped


class Selector:
    def __init__(self, clip, specs: list[PathSpec], settings, store=None, cancel=None, progress=None) -> None:
        self.clip = clip
        self.forced = len(specs) == 1
        self.skipped: dict[str, str] = {}
        if self.forced:
            specs[0].check_available()
        else:
            specs, self.skipped = worth_probing(specs, cpu_flags())
            if self.skipped:
                log.info("inference paths not probed: %s", "; ".join(f"{n} ({w})" for n, w in self.skipped.items()))
        self.specs = specs
        self.max_batch = int(settings.max_batch)
        self.budget_s = float(getattr(settings, "probe_budget_s", 120.0))
        self.cancel = cancel or threading.Event()
        self.progress = progress or (lambda message: None)
        self.threads = torch.get_num_threads()
        tokens = clip.tokenizer(["a photo of a dog."])
        height, width = _image_size(clip)
        data_dir = _data_dir(settings)
        self.graphs = GraphCache(
            data_dir, clip.id, clip.model,
            {"image": torch.zeros(1, 3, height, width), "text": tokens},
        )
        self.context = BuildContext(clip.model, self.graphs, self.threads, clip.device)
        self.cache = ProbeRecords(store if store is not None else _store(settings, data_dir))
        self._runners: dict[tuple[str, str], Runner] = {}
        self._gate_inputs: dict[str, tuple[torch.Tensor, torch.Tensor, str]] = {}
        self.broken: dict[str, str] = {}  # path -> why it could not be built
        self._deadline = float("inf")

    def check(self) -> None:
        """Between two timed calls: stop when told to, or when the probe's budget is spent."""
        if self.cancel.is_set():
            raise ProbeCancelled("the probe was cancelled")
        if time.monotonic() > self._deadline:
            raise ProbeBudgetSpent()

    # ---------------------------------------------------------------- building

    def runner(self, name: str, tower: str) -> Runner | None:
        """The runner of ``name`` for ``tower``, built once; ``None`` (logged once) when it fails."""
        key = (name, tower)
        if key not in self._runners:
            if name in self.broken:
                return None
            try:
                self._runners[key] = PATHS[name].build(self.context, tower)
            except Exception as exc:  # an exporter or runtime that cannot take this model
                self.broken[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.warning("inference path %s failed to build for the %s tower (%s); %s", name, tower,
                            self.broken[name], "falling back to torch/fp32" if self.forced else "not using it")
                log.debug("build failure of %s", name, exc_info=True)
                return None
        return self._runners[key]

    # ---------------------------------------------------------------- gate

    def _reference(self, tower: str) -> tuple[torch.Tensor, torch.Tensor, str]:
        if tower not in self._gate_inputs:
            reference = self.runner(REFERENCE, tower)
            if tower == "image":
                inputs, source = gate_pixels(self.clip.preprocess, GATE_IMAGES)
            else:
                prompts = gate_prompts(GATE_PROMPTS)
                inputs, source = self.clip.tokenizer(prompts), f"{len(prompts)} ImageNet class prompts"
            self._gate_inputs[tower] = (inputs, run_in_batches(reference, inputs, GATE_BATCH), source)
        return self._gate_inputs[tower]

    def gate(self, name: str, tower: str, record: dict) -> GateResult | None:
        """Gate figures of ``name`` on ``tower`` (from the record when cached), ``None`` if unbuildable."""
        cached = record.setdefault("gate", {}).setdefault(tower, {}).get(name)
        if cached is not None:
            return GateResult(**cached)
        runner = self.runner(name, tower)
        if runner is None:
            return None
        inputs, reference, source = self._reference(tower)
        result = compare(reference, run_in_batches(runner, inputs, GATE_BATCH))
        result.batch_drift = batch_drift(runner, inputs, DRIFT_BATCH)
        record["gate"][tower][name] = result.to_dict()
        record.setdefault("gate_source", {})[tower] = source
        log.info("fidelity gate %s %s: %s -> %s", tower, name, result.summary(), "pass" if result.passed else "FAIL")
        return result

    # ---------------------------------------------------------------- probe and choose

    def key_parts(self) -> dict:
        return {
            "format": PROBE_FORMAT,
            "model": self.clip.id,
            "weights": self.graphs.fingerprint,
            "cpu": cpu_signature(),
            "threads": self.threads,
            "max_batch": self.max_batch,
            "text_batch": TEXT_BATCH,
            "candidates": [s.name for s in self.specs],
            "gate": [MIN_COSINE, MIN_TOP1, MAX_BATCH_DRIFT, GATE_IMAGES, GATE_PROMPTS, GATE_CLASSES],
            "versions": library_versions(*LIBRARIES),
        }

    def select(self, probe: bool = False, remeasure: bool = False) -> InferenceEngine:
        key = probe_key(self.key_parts())
        record = None if remeasure else self.cache.load(key)
        cached = record is not None
        if record is None:
            record = {"timings": {}, "gate": {}}
        if self.forced:
            engine = self._forced(record)
        elif not cached and not probe:
            engine = self._reference_engine()
            self._runners.clear()
            log.info("inference: %s; not yet measured: %s", engine.summary(), ", ".join(engine.pending) or "-")
            return engine
        else:
            if not cached:
                names = ", ".join(s.name for s in self.specs)
                log.info("probing inference paths %s (budget %.0fs; once per model, CPU and library versions)",
                         names, self.budget_s)
                self._deadline = time.monotonic() + self.budget_s
                record["timings"] = self._measure()
            engine = self._auto(record, cached)
            engine.timings = record["timings"]
        self.cache.save(key, record)
        self._runners.clear()
        log.info("inference: %s%s", engine.summary(), " (probe cached)" if cached else "")
        for tower, why in engine.reasons.items():
            log.info("inference %s: %s", tower, why)
        return engine

    def _reference_engine(self) -> InferenceEngine:
        """torch/fp32 for both towers now; the other candidates wait for a probe."""
        pending = [s.name for s in self.specs if s.name != REFERENCE]
        why = (f"{REFERENCE} (the reference) until a probe has measured {', '.join(pending)}: "
               "the server probes in the background once ready, `vgloss probe` runs it now") if pending else (
               f"{REFERENCE}: the only candidate on this machine")
        engine = InferenceEngine([Route(1, self.max_batch, self.runner(REFERENCE, "image"))],
                                 self.runner(REFERENCE, "text"), {"image": why, "text": why})
        engine.pending = pending
        return engine

    def _forced(self, record: dict) -> InferenceEngine:
        name = self.specs[0].name
        runners, reasons = {}, {}
        for tower in ("image", "text"):
            runner = self.runner(name, tower)
            if runner is None:
                runners[tower] = self.runner(REFERENCE, tower)
                reasons[tower] = f"{name} was asked for but failed to build ({self.broken[name]}); torch/fp32 runs"
                continue
            runners[tower] = runner
            if name == REFERENCE:
                reasons[tower] = f"{name} asked for (the fp32 reference)"
                continue
            result = self.gate(name, tower, record)
            if result.passed:
                reasons[tower] = f"{name} asked for; fidelity gate passed: {result.summary()}"
            else:
                reasons[tower] = f"{name} asked for; it FAILS the fidelity gate: {result.summary()}"
                log.warning("VGLOSS_BACKEND/VGLOSS_PRECISION force %s, which fails the fidelity gate on the %s "
                            "tower of %s: %s (needs cosine >= %s and top-1 >= %.0f%%)", name, tower, self.clip.id,
                            result.summary(), MIN_COSINE, 100 * MIN_TOP1)
        return InferenceEngine([Route(1, self.max_batch, runners["image"])], runners["text"], reasons)

    def _measure(self) -> dict:
        """Timings per tower; a path that fails to build, or that the budget did not reach, is absent."""
        timings: dict = {}
        height, width = _image_size(self.clip)
        plans: list[tuple[str, list[int], Callable[[int], torch.Tensor]]] = [
            ("image", sorted({1, self.max_batch}), lambda n: torch.randn(n, 3, height, width)),
            ("text", [TEXT_BATCH], lambda n: self.clip.tokenizer(gate_prompts(n))),
        ]
        for tower, sizes, make_inputs in plans:
            runners = {}
            try:
                for spec in self.specs:
                    self.check()
                    self.progress(f"building {spec.name} ({tower})")
                    if (runner := self.runner(spec.name, tower)) is not None:
                        runners[spec.name] = runner
                self.progress(f"timing the {tower} tower at batch {', '.join(map(str, sizes))}")
                measured = probe_tower(runners, make_inputs, sizes, keep=(REFERENCE,), reference=REFERENCE,
                                       check=self.check)
            except ProbeBudgetSpent:
                log.warning("the probe's budget (%.0fs) ran out during the %s tower: %s keeps torch/fp32",
                            self.budget_s, tower, tower)
                measured = {}
            timings[tower] = {name: {str(b): t for b, t in per.items()} for name, per in measured.items() if per}
            log.info("probe %s: %s", tower, "; ".join(
                f"{name} " + " ".join(f"bs{b} {1000 * t:.0f}ms" for b, t in per.items())
                for name, per in measured.items()) or "not measured")
        if self.broken:
            timings["broken"] = dict(self.broken)
        return timings

    def _auto(self, record: dict, cached: bool) -> InferenceEngine:
        timings = record["timings"]
        self.broken.update(timings.get("broken", {}))
        refused: dict[str, dict[str, str]] = {"image": {}, "text": {}}

        def passes(name: str, tower: str) -> bool:
            if name == REFERENCE:
                return True
            result = self.gate(name, tower, record)
            if result is None:
                refused[tower][name] = "failed to build"
                return False
            if not result.passed:
                refused[tower][name] = f"fails the fidelity gate ({result.summary()})"
            return result.passed

        image = timings.get("image", {})
        routes = choose_routes(image, self.max_batch, lambda name: passes(name, "image"))
        text_times = {n: per[str(TEXT_BATCH)] for n, per in timings.get("text", {}).items() if str(TEXT_BATCH) in per}
        text_name = next((n for n in sorted(text_times, key=text_times.get) if passes(n, "text")), REFERENCE)
        image_routes = []
        for low, high, name in routes:
            runner = self.runner(name, "image") or self.runner(REFERENCE, "image")
            image_routes.append(Route(low, high, runner))
        text_runner = self.runner(text_name, "text") or self.runner(REFERENCE, "text")
        reasons = {
            "image": _why_image(routes, image, self.max_batch, refused["image"], record),
            "text": _why_text(text_name, text_times, refused["text"]),
        }
        return InferenceEngine(image_routes, text_runner, reasons)


def predicted_seconds(per: dict[str, float], batch: int, max_batch: int) -> float:
    """Seconds per call at ``batch`` from the probe's points (linear between batch 1 and max)."""
    t1 = per.get("1")
    tmax = per.get(str(max_batch))
    if t1 is None:
        return tmax * batch / max_batch
    if tmax is None or max_batch == 1:
        return t1 * batch  # only timed at batch 1 (too slow to time again): assume no batching gain
    return t1 + (tmax - t1) * (batch - 1) / (max_batch - 1)


def choose_routes(timings: dict[str, dict[str, float]], max_batch: int, passes) -> list[tuple[int, int, str]]:
    """``[(low, high, path)]`` covering batches 1..max_batch with the fastest path that passes the
    gate at each size; ``passes(path)`` is only called for paths that would win somewhere."""
    excluded: set[str] = set()
    while True:
        names = [n for n in timings if n not in excluded]
        if not names:
            return [(1, max_batch, REFERENCE)]
        winners = [min(names, key=lambda n: predicted_seconds(timings[n], b, max_batch)) for b in range(1, max_batch + 1)]
        failing = next((n for n in dict.fromkeys(winners) if not passes(n)), None)
        if failing is None:
            break
        excluded.add(failing)
    routes: list[tuple[int, int, str]] = []
    for batch, name in enumerate(winners, start=1):
        if routes and routes[-1][2] == name:
            routes[-1] = (routes[-1][0], batch, name)
        else:
            routes.append((batch, batch, name))
    return routes


def _speedup(timings: dict, name: str, batch: int, max_batch: int) -> str:
    ref = timings.get(REFERENCE)
    if not ref or name not in timings:
        return ""
    ratio = predicted_seconds(ref, batch, max_batch) / predicted_seconds(timings[name], batch, max_batch)
    return f"{ratio:.2f}x torch/fp32 at batch {batch}"


def _why_image(routes, timings, max_batch, refused, record) -> str:
    parts = []
    for low, high, name in routes:
        speed = ", ".join(filter(None, (_speedup(timings, name, b, max_batch) for b in sorted({low, high}))))
        gate = record.get("gate", {}).get("image", {}).get(name)
        figure = f"; gate {GateResult(**gate).summary()}" if gate else ""
        parts.append(f"{name} for batches {low}-{high}: fastest measured ({speed}){figure}")
    if refused:
        parts.append("refused: " + "; ".join(f"{n} {why}" for n, why in refused.items()))
    return ". ".join(parts)


def _why_text(name, times, refused) -> str:
    ref = times.get(REFERENCE)
    speed = f" ({ref / times[name]:.2f}x torch/fp32 at {TEXT_BATCH} prompts)" if ref and name in times else ""
    why = f"{name}: fastest measured that passes the gate{speed}"
    if refused:
        why += ". refused: " + "; ".join(f"{n} {reason}" for n, reason in refused.items())
    return why


def _store(settings, data_dir: Path) -> Store:
    """The store the settings name (a Redis URL, else the data dir), where probe decisions live."""
    return open_store(SimpleNamespace(redis_url=getattr(settings, "redis_url", None), data_dir=data_dir,
                                      redis_namespace=getattr(settings, "redis_namespace", None)))


def _data_dir(settings) -> Path:
    if getattr(settings, "data_dir", None):
        return Path(settings.data_dir)

    return _default_data_dir()


def _image_size(clip) -> tuple[int, int]:
    size = clip.preprocess_cfg.get("size", 224)
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])
