"""The one error root: codes, families, pickling, and how the CLI and the server show them."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gloss_gen.core.errors import CorruptDataError, InputError, NotFoundError, UnavailableError, VglossError
from gloss_gen.data.classsets import ClassSet, ClassSetError, ClassSpec


def test_library_errors_share_one_root_with_codes() -> None:
    from gloss_gen.data.classifier import ClassifierUnreadableError
    from gloss_gen.data.descriptions import DescriptionError
    from gloss_gen.data.store import StoreError
    from gloss_gen.data.wordnet import WordNetMissingError
    from gloss_gen.evaluation.datasets import DatasetError
    from gloss_gen.evaluation.runner import EvalError

    for cls, family in [
        (ClassSetError, InputError),
        (DescriptionError, InputError),
        (DatasetError, InputError),
        (EvalError, InputError),
        (StoreError, UnavailableError),
        (ClassifierUnreadableError, CorruptDataError),
        (WordNetMissingError, VglossError),
    ]:
        assert issubclass(cls, family), cls
        assert cls.code and cls.code == cls.code.lower() and " " not in cls.code


def test_errors_survive_pickling_with_their_code() -> None:
    from app.services.service_errors import ClassSetNotReady, QueueFull

    for error in [QueueFull(10, 5, 3), ClassSetNotReady("birds", "ViT-B-32/openai"),
                  VglossError("x", code="custom_code", retry_after_s=2)]:
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.code, copy.message, copy.retry_after_s) == (
            type(error), error.code, error.message, error.retry_after_s)


def test_every_code_maps_to_one_status() -> None:
    from app.error_envelope import status_for
    from app.services.service_errors import ClassSetNotFound, ClassSetNotReady, JobNotFound, NotReady
    from gloss_gen.data.classifier import ClassifierUnreadableError
    from gloss_gen.data.store import StoreError

    assert status_for(ClassSetNotFound("x")) == 404
    assert status_for(JobNotFound("x")) == 404
    assert status_for(ClassSetNotReady("x", "m")) == 409
    assert status_for(NotReady("loading")) == 503
    assert status_for(StoreError("down")) == 503
    assert status_for(ClassifierUnreadableError("bad")) == 503
    assert status_for(ClassSetError("bad file")) == 400
    assert status_for(NotFoundError("gone")) == 404
    assert status_for(VglossError("unexpected")) == 500


# --- a corrupt classifier in the store ---------------------------------------------------------


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((64, 48), 60).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


def _store_corrupt_classifier(store, tiny_model) -> str:
    """A custom class set 'mine' whose active classifier's bytes are cut short; returns its key."""
    from gloss_gen.classify.pipeline import build_and_store
    from gloss_gen.data.methods import describe_offline

    class_set = ClassSet("mine", [ClassSpec("a", "apple"), ClassSpec("b", "banana")])
    classifier = build_and_store(tiny_model, describe_offline(class_set, "classname")[0], store)
    raw_key = store._k("classifier", classifier.key)
    store.backend.set(raw_key, store.backend.get(raw_key)[:200])
    return classifier.key


def test_server_answers_a_corrupt_classifier_with_a_code_not_a_500(app_store_client, tiny_model) -> None:
    store, client = app_store_client
    _store_corrupt_classifier(store, tiny_model)
    response = client.post("/v1/classify", files=[("images", ("x.jpg", _jpeg(), "image/jpeg"))],
                           data={"class_set": "mine"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "classifier_unreadable"
    assert "\n" not in error["message"]
    # the default class set keeps serving
    ok = client.post("/v1/classify", files=[("images", ("x.jpg", _jpeg(), "image/jpeg"))])
    assert ok.status_code == 200


@pytest.fixture()
def app_store_client(tmp_path: Path):
    sys.path.insert(0, str(Path(__file__).parent / "app"))
    from api_helpers import make_settings, wait_ready
    from fastapi.testclient import TestClient

    from app.main import create_app
    from gloss_gen.data.store import DirectoryBackend, Store

    store = Store(DirectoryBackend(tmp_path / "store"))
    with TestClient(create_app(make_settings(tmp_path / "data"), store=store),
                    raise_server_exceptions=False) as client:
        wait_ready(client)
        yield store, client


def test_cli_reports_a_corrupt_classifier_in_one_line(isolated_env, tmp_path, tiny_model) -> None:
    from gloss_gen.core.config import Settings
    from gloss_gen.data.store import open_store

    _store_corrupt_classifier(open_store(Settings()), tiny_model)
    image = tmp_path / "x.jpg"
    image.write_bytes(_jpeg())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")} | isolated_env
    proc = subprocess.run([sys.executable, "-m", "gloss_gen.cli", "classify", str(image), "--class-set", "mine"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vgloss classify: error:") and "classifier" in last
    assert "Traceback" not in proc.stderr
