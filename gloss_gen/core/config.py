"""Typed settings, read from ``VGLOSS_*`` environment variables and an optional ``.env`` file.

One ``Settings`` object serves the CLI, the server and the workers; ``get_settings()`` caches it
per process. Tests build their own ``Settings(...)`` instead of mutating the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gloss_gen.core.devices import resolve_device, resolve_precision
from gloss_gen.core.prompts import DEFAULT_LABEL_TEMPLATE_SET, TEMPLATE_SETS


def _default_data_dir() -> Path:
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vgloss"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VGLOSS_", env_file=".env", extra="ignore")

    # Model
    model: str = Field("ViT-B-32", description="open_clip model name (also hf-hub:/local-dir:)")
    pretrained: str = Field("openai", description="pretrained tag, checkpoint path, or 'none'")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = Field(
        "auto",
        description="auto = fp16 on CUDA; on the CPU the fastest path that passes the fidelity gate "
        "(see backend); bf16 / int8 force that precision on the CPU",
    )
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto",
        description="CPU inference runtime; auto = torch fp32 until a probe has measured the faster paths "
        "(the server probes in the background after it is ready; `vgloss probe` runs it); "
        "the decision is cached in the store",
    )
    probe_budget_s: float = Field(
        120.0, gt=0, le=3600, description="the most seconds one probe of the inference paths may take"
    )
    cache_dir: Path | None = Field(None, description="where open_clip caches downloaded weights")

    # Store
    redis_url: str | None = None
    redis_namespace: str | None = Field(
        None, description="key prefix in the store (default vgloss:v1); one per deployment or test"
    )
    data_dir: Path = Field(default_factory=_default_data_dir)
    nltk_data: Path | None = Field(None, description="NLTK data root holding corpora/wordnet")

    # Serving
    default_class_set: str = "imagenet1k"
    default_method: str = Field("wordnet", description="method used to build a missing default set")
    max_batch: int = Field(32, ge=1, le=4096)
    batch_wait_ms: float = Field(5.0, ge=0)
    max_queue: int = Field(512, ge=1, description="images waiting for the model before 503")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_images_per_request: int = Field(32, ge=1)
    max_labels: int = Field(1000, ge=1)
    label_templates: str = Field(
        DEFAULT_LABEL_TEMPLATE_SET,
        description="template set ad-hoc labels are embedded with (openai = 80 prompts a label, simple = 7)",
    )
    max_label_prompts: int = Field(
        8000, ge=1, description="prompts (labels x templates) one request's new labels may ask to embed"
    )
    label_cache_size: int = Field(64, ge=1)
    open_set: Literal["off", "mcm", "neglabel"] = Field(
        "off", description="open-set scoring when a request names none: off, mcm or neglabel (docs/open-set.md)"
    )
    open_set_threshold: float | None = Field(
        None, ge=0.0, le=1.0,
        description="threshold of VGLOSS_OPEN_SET's method where a class set has no calibration (unset: the "
        "method's default; mcm has none and needs this)",
    )
    rerank: Literal["fudd", "none"] = Field(
        "fudd", description="second look when a request names none: fudd re-ranks the first pass's top rerank_k "
        "classes with the class set's pair descriptions wherever it has them (docs/second-look.md); none = never",
    )
    rerank_k: int = Field(10, ge=2, le=100, description="classes of the first pass FuDD re-ranks (FuDD's k)")
    neglabel_max_candidates: int = Field(
        0, ge=0,
        description="WordNet candidates embedded to choose NegLabel's negatives from, evenly spread; 0 = all "
        "(about 57,000: seconds on a GPU, 15-25 min for ViT-B-32 on two CPU cores)",
    )
    decode_threads: int = Field(0, ge=0, description="0 = one per CPU core")
    decode_threads_per_request: int = Field(
        0, ge=0, description="decode threads one request may use at once; 0 = half of decode_threads (at least 1)"
    )
    jpeg_draft: bool = True
    max_jpeg_scans: int = Field(
        100, ge=1, description="scans per JPEG, counted before decoding (progressive files have about 10)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request head (request line and headers) must arrive within this (vgloss serve)"
    )
    body_timeout_s: float = Field(
        300.0, gt=0, description="a request body must arrive completely within this (408 after)"
    )
    max_body_bytes_in_flight: int = Field(
        0, ge=0,
        description="request-body bytes one server process holds at once, over all requests (503 server_busy "
        "beyond); 0 = the largest body one request may send (a JSON request of every image at the byte limit)",
    )
    max_examples: int = Field(20_000, ge=1, description="labelled example images kept per class set (API)")
    max_examples_per_request: int = Field(256, ge=1, description="example images in one upload (API)")
    max_example_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="total bytes of example images kept per class set (API)"
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated Bearer keys for /v1/*"
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated keys for mutating routes"
    )

    # LLM
    llm_model: str = "gpt-4o-mini"
    llm_concurrency: int = Field(8, ge=1)
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(5, ge=0)

    # Queue (`vgloss describe --queue`, `vgloss worker`)
    queue_name: str = Field("vgloss:queue", description="Redis queue the describe tasks go through")
    queue_lease_s: float = Field(
        10.0, gt=0, description="a worker's claim on a running task; a dead worker's task reruns after it"
    )
    jobs_on_queue: bool = Field(
        False,
        description="POST /v1/class-sets and .../adapters jobs go to the worker queue instead of running in the api "
        "process (needs VGLOSS_REDIS_URL and running `vgloss worker`s)",
    )

    @model_validator(mode="after")
    def _queue_needs_redis(self):
        if self.jobs_on_queue and not self.redis_url:
            raise ValueError("VGLOSS_JOBS_ON_QUEUE needs VGLOSS_REDIS_URL: the workers take jobs from Redis")
        return self

    @model_validator(mode="after")
    def _mcm_needs_a_threshold(self):
        if self.open_set == "mcm" and self.open_set_threshold is None:
            raise ValueError(
                "VGLOSS_OPEN_SET=mcm needs VGLOSS_OPEN_SET_THRESHOLD: the MCM score starts at 1/C for C classes, "
                "so it has no default threshold (see docs/open-set.md)"
            )
        return self

    @field_validator("label_templates")
    @classmethod
    def _known_template_set(cls, value: str) -> str:
        if value not in TEMPLATE_SETS:
            raise ValueError(f"unknown template set {value!r}; choose from {', '.join(TEMPLATE_SETS)}")
        return value

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        if value is None:
            return []
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return [str(k) for k in json.loads(value)]
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    def resolved_device(self) -> str:
        return resolve_device(self.device)

    def resolved_precision(self) -> str:
        return resolve_precision(self.precision, self.device)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
