"""The page at ``/`` in a real headless Chromium against a real uvicorn server on the tiny model.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/install.sh`` installs them) and
selenium (the ``dev`` extra); skips without them outside CI, fails in CI.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from gloss_gen.core.prompts import template_prompts

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
API_KEY = "web-page-key"
WAIT_S = 60
RANDOM_WEIGHTS_NOTE = ("Random weights (VGLOSS_PRETRAINED=none): predictions are meaningless; "
                       "this only checks the installation.")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not CHROMIUM or not CHROMEDRIVER:
        return "needs Debian chromium + chromium-driver (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    if reason := _missing():
        if IN_CI:
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition, message)


def _open(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    _wait(driver, lambda d: any(o.get_attribute("value") == "__labels__"
                                for o in d.find_elements(By.CSS_SELECTOR, "#class-set option")),
          "the class-set list never finished loading")


def _submit(driver, files: list[Path], *, class_set: str | None = None, labels: str | None = None,
            top_k: int = 3) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.execute_script("document.getElementById('results').replaceChildren();"
                          "document.getElementById('error').hidden = true;")
    chooser = driver.find_element(By.ID, "images")
    driver.execute_script("arguments[0].value = '';", chooser)  # chromedriver appends to a 'multiple' input
    chooser.send_keys("\n".join(str(p) for p in files))
    select = Select(driver.find_element(By.ID, "class-set"))
    if labels is not None:
        select.select_by_value("__labels__")
        field = driver.find_element(By.ID, "labels")
        field.clear()
        field.send_keys(labels)
    elif class_set is not None:
        select.select_by_value(class_set)
    top = driver.find_element(By.ID, "top-k")
    top.clear()
    top.send_keys(str(top_k))
    driver.find_element(By.ID, "classify").click()


def _rendered(driver) -> list[list[dict]]:
    from selenium.webdriver.common.by import By

    cards = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result"), "no results rendered")
    out = []
    for card in cards:
        rows = []
        for row in card.find_elements(By.CSS_SELECTOR, ".prediction"):
            evidence = row.find_elements(By.CSS_SELECTOR, ".evidence")
            rows.append({
                "label": row.find_element(By.CSS_SELECTOR, ".label").text,
                "score": row.find_element(By.CSS_SELECTOR, ".score").text,
                "bar": row.find_element(By.CSS_SELECTOR, ".bar").value_of_css_property("width"),
                "evidence": evidence[0].text if evidence else "",
            })
        out.append(rows)
    return out


def _server_note(driver) -> str:
    from selenium.webdriver.common.by import By

    note = driver.find_element(By.ID, "server-note")
    return note.text if note.is_displayed() else ""


def _api(server_url: str, path: Path, headers: dict | None = None, **fields) -> httpx.Response:
    data = {k: str(v).lower() if isinstance(v, bool) else v for k, v in fields.items()}
    return httpx.post(f"{server_url}/v1/classify", files=[("images", (path.name, path.read_bytes(), "image/jpeg"))],
                      data=data, headers=headers or {}, timeout=60)


def test_page_classifies_a_jpeg_and_shows_the_apis_errors(browser, live_server_factory, sample_photos, tmp_path):
    server = live_server_factory()
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/docs" in page.text and "Content-Security-Policy" in page.headers

    _open(browser, server.url)
    from selenium.webdriver.common.by import By

    # the default class set by name, and a visible note that the weights are random
    ready = httpx.get(server.url + "/readyz", timeout=10).json()
    assert ready["default_class_set"] == "cifar10" and ready["model"].endswith("/none")
    default = browser.find_element(By.CSS_SELECTOR, "#class-set option[value='']")
    _wait(browser, lambda d: default.text == "cifar10 (server default)", f"default option reads {default.text!r}")
    _wait(browser, lambda d: _server_note(d) == RANDOM_WEIGHTS_NOTE, "no random-weights note shown")
    hint = browser.find_element(By.CSS_SELECTOR, "#labels-row .muted").get_attribute("textContent")
    assert "one label per line" in hint and "comma or" not in hint
    photo = sample_photos[1]
    _submit(browser, [photo], class_set="cifar10", top_k=3)
    [shown] = _rendered(browser)
    expected = _api(server.url, photo, class_set="cifar10", top_k=3, explain=True).json()["results"][0]["predictions"]
    assert [row["label"] for row in shown] == [p["label"] for p in expected]
    assert [row["score"] for row in shown] == [f"{p['score'] * 100:.1f}%" for p in expected]
    assert [row["evidence"] for row in shown] == [p["evidence"] for p in expected]
    widths = [float(row["bar"].removesuffix("px")) for row in shown]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    if os.environ.get("VGLOSS_SCREENSHOT_DIR"):
        browser.save_screenshot(str(Path(os.environ["VGLOSS_SCREENSHOT_DIR"]) / "web-page.png"))

    # ad-hoc labels typed in the page: one per line, as the API takes them (a comma stays in its label)
    labels = ["cat", "rocket", "red sports car, parked"]
    _submit(browser, [photo], labels="\n".join(labels), top_k=3)
    [shown] = _rendered(browser)
    expected = _api(server.url, photo, labels=labels, top_k=3, explain=True).json()["results"][0]["predictions"]
    assert [row["label"] for row in shown] == [p["label"] for p in expected]
    assert sorted(row["label"] for row in shown) == sorted(labels)
    assert [row["score"] for row in shown] == [f"{p['score'] * 100:.1f}%" for p in expected]
    # the evidence is the prompt that matched best, not the label again
    for row, prediction in zip(shown, expected):
        assert prediction["evidence"] in template_prompts(prediction["label"], "simple")
        assert prediction["evidence"] != prediction["label"]
        assert row["evidence"] == f"best-matching prompt: “{prediction['evidence']}”"
    if os.environ.get("VGLOSS_SCREENSHOT_DIR"):
        browser.save_screenshot(str(Path(os.environ["VGLOSS_SCREENSHOT_DIR"]) / "web-page-labels.png"))

    # an invalid file: the page shows the API's own error message
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image")
    api_error = _api(server.url, bad)
    assert api_error.status_code == 400
    _submit(browser, [bad], class_set="cifar10")
    box = _wait(browser, lambda d: (e := d.find_element(By.ID, "error")).is_displayed() and e, "no error shown")
    assert box.text == api_error.json()["error"]["message"]
    assert not browser.find_elements(By.CSS_SELECTOR, "#results .result")
    if os.environ.get("VGLOSS_SCREENSHOT_DIR"):
        browser.save_screenshot(str(Path(os.environ["VGLOSS_SCREENSHOT_DIR"]) / "web-page-error.png"))


def test_page_sends_the_typed_api_key(browser, live_server_factory, sample_photos):
    from selenium.webdriver.common.by import By

    server = live_server_factory(api_keys=[API_KEY])
    _open(browser, server.url)
    assert "API key" in browser.find_element(By.ID, "status").text  # the 401 message, not a silent empty list
    _submit(browser, [sample_photos[0]], top_k=2)
    box = _wait(browser, lambda d: (e := d.find_element(By.ID, "error")).is_displayed() and e, "no error shown")
    assert box.text == _api(server.url, sample_photos[0]).json()["error"]["message"]

    key = browser.find_element(By.ID, "api-key")
    key.send_keys(API_KEY)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    _wait(browser, lambda d: any(o.get_attribute("value") == "cifar10"
                                 for o in d.find_elements(By.CSS_SELECTOR, "#class-set option")),
          "class sets not listed once the key was typed")
    _submit(browser, [sample_photos[0]], class_set="cifar10", top_k=2)
    [shown] = _rendered(browser)
    assert len(shown) == 2
    assert API_KEY not in httpx.get(server.url + "/", timeout=10).text + httpx.get(server.url + "/web/app.js").text


def test_page_notes_random_weights_only_for_a_none_model_and_labels_split_on_lines(browser, live_server_factory):
    server = live_server_factory()
    _open(browser, server.url)
    _wait(browser, lambda d: _server_note(d) == RANDOM_WEIGHTS_NOTE, "no random-weights note shown")
    browser.execute_script("noteModel('ViT-B-32/openai')")  # what a model with real weights reports
    assert _server_note(browser) == ""
    browser.execute_script("noteModel('ViT-B-32/none')")
    assert _server_note(browser) == RANDOM_WEIGHTS_NOTE
    split = browser.execute_script("return parseLabels(arguments[0])", " cat \r\n\nred car, parked\n[draft] dog\n")
    assert split == ["cat", "red car, parked", "[draft] dog"]


def test_page_says_why_the_server_is_not_ready(browser, tmp_path):
    from api_helpers import LiveServer, make_settings
    from selenium.webdriver.common.by import By

    from app.main import create_app

    # weights that cannot be found: start-up fails while loading the model, and /readyz says so
    server = LiveServer(create_app(make_settings(tmp_path / "data", pretrained="/nowhere/no-such-weights.pt")))
    try:
        with pytest.raises(AssertionError, match="start-up failed"):
            server.start()
        message = httpx.get(server.url + "/readyz", timeout=10).json()["error"]["message"]
        browser.get(server.url + "/")
        _wait(browser, lambda d: _server_note(d) == message, "the start-up failure is not shown")
        assert "start-up failed while loading model" in message
        assert browser.find_element(By.CSS_SELECTOR, "#class-set option[value='']").text == "(server default)"
    finally:
        server.stop()
