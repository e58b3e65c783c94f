"""Prometheus metrics, one registry per app so that several apps in one process never collide."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "vgloss_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "vgloss_http_request_duration_seconds",
            "Time from request start to the end of the response",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "vgloss_inference_batch_size", "Images per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "vgloss_inference_batch_seconds",
            "Time to encode and score one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "vgloss_inference_queue_depth", "Decoded images waiting for the model", registry=r
        )
        self.images_classified = Counter(
            "vgloss_images_classified", "Images classified successfully", registry=r
        )
        self.image_errors = Counter(
            "vgloss_image_errors", "Images rejected, by error code", ["code"], registry=r
        )
        self.text_prompts_encoded = Counter(
            "vgloss_text_prompts_encoded",
            "Text prompts run through the text encoder (label sets, class-set builds)",
            registry=r,
        )
        self.inference_items = Counter(
            "vgloss_inference_items",
            "Images and prompts through a model tower, by tower and inference path (backend/precision)",
            ["tower", "path"],
            registry=r,
        )
        self.inference_seconds = Counter(
            "vgloss_inference_seconds",
            "Seconds spent in a model tower, by tower and inference path (backend/precision)",
            ["tower", "path"],
            registry=r,
        )
        self.label_classifiers = Counter(
            "vgloss_label_classifier_lookups",
            "Ad-hoc label classifiers by where they came from (memory, store, built)",
            ["source"],
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
