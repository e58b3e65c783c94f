// The vgloss web page: talks to the public API only (/v1 with the API key the user types, and
// /readyz for the default class set and the model).
"use strict";

const LABELS_OPTION = "__labels__";
const RANDOM_WEIGHTS_NOTE = "Random weights (VGLOSS_PRETRAINED=none): predictions are meaningless; "
  + "this only checks the installation.";
const READY_RETRY_MS = 3000;
const $ = (id) => document.getElementById(id);
let chosenFiles = [];
let defaultClassSet = "";  // what /readyz names; "" until the server is ready

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function apiError(response) {
  // Every API error is {"error": {"code", "message"}}; show its message as the API wrote it.
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `The server answered ${response.status} ${response.statusText}.`;
}

function defaultOptionText() {
  return defaultClassSet ? `${defaultClassSet} (server default)` : "(server default)";
}

function showServerNote(message) {
  const note = $("server-note");
  note.textContent = message;
  note.hidden = !message;
}

function noteModel(model) {
  // A model id ending in "/none" was built with VGLOSS_PRETRAINED=none: deterministic random weights.
  showServerNote(typeof model === "string" && model.endsWith("/none") ? RANDOM_WEIGHTS_NOTE : "");
}

async function loadServerInfo() {
  // /readyz (no API key) names the default class set and the model; while the server is still
  // starting it answers 503 with why, which is worth showing.
  let retry = true;
  try {
    const response = await fetch("/readyz");
    if (response.ok) {
      const ready = await response.json();
      defaultClassSet = ready.default_class_set || "";
      $("class-set").options[0].textContent = defaultOptionText();
      noteModel(ready.model);
      return;
    }
    const message = await apiError(response);
    retry = !message.includes("start-up failed");
    showServerNote(message);
  } catch (err) {
    showServerNote(`Could not reach the server: ${err.message}`);
  }
  if (retry) setTimeout(loadServerInfo, READY_RETRY_MS);
}

async function loadClassSets() {
  const select = $("class-set");
  const previous = select.value;
  select.replaceChildren(new Option(defaultOptionText(), ""));
  try {
    const response = await fetch("/v1/class-sets", { headers: authHeaders() });
    if (response.ok) {
      for (const set of await response.json()) {
        const text = `${set.name} — ${set.num_classes} classes${set.ready ? "" : " (built on first use)"}`;
        select.add(new Option(text, set.name));
      }
    } else {
      $("status").textContent = `Class sets: ${await apiError(response)}`;
    }
  } catch (err) {
    $("status").textContent = `Class sets: ${err.message}`;
  }
  select.add(new Option("Type labels…", LABELS_OPTION));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  $("labels-row").hidden = select.value !== LABELS_OPTION;
}

function setFiles(files) {
  chosenFiles = [...files];
  $("chosen").textContent = chosenFiles.length
    ? chosenFiles.map((f) => f.name).join(", ")
    : "No images chosen.";
}

function parseLabels(text) {
  // One label per line, as the API takes them (it never splits on commas: "red car, parked" is one).
  return text.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function evidenceText(evidence, labelMode) {
  // Labels are embedded through prompt templates: the evidence is the prompt that matched best.
  return labelMode ? `best-matching prompt: “${evidence}”` : evidence;
}

function renderResults(body, files, labelMode) {
  const section = $("results");
  const against = labelMode ? "your labels" : `class set ${body.class_set}`;
  section.replaceChildren(el("p", "meta", `${against} · model ${body.model}`));
  noteModel(body.model);
  for (const result of body.results) {
    const card = el("article", "result");
    const file = files[result.index];
    if (file) {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = result.filename || "";
      card.append(img);
    }
    const inner = el("div", "body");
    inner.append(el("h2", "", result.filename || `image ${result.index + 1}`));
    if (result.error) {
      inner.append(el("p", "error", result.error.message));
    } else {
      for (const p of result.predictions) {
        const row = el("div", "prediction");
        const line = el("div", "line");
        const track = el("div", "track");
        const bar = el("div", "bar");
        bar.style.width = `${(Math.max(0, Math.min(1, p.score)) * 100).toFixed(1)}%`;
        track.append(bar);
        const label = el("span", "label", p.label);
        label.title = `${p.label} (${p.class_id})`;
        line.append(label, track, el("span", "score", `${(p.score * 100).toFixed(1)}%`));
        row.append(line);
        if (p.evidence) row.append(el("div", "evidence", evidenceText(p.evidence, labelMode)));
        inner.append(row);
      }
    }
    card.append(inner);
    section.append(card);
  }
}

async function classify(event) {
  event.preventDefault();
  showError("");
  if (!chosenFiles.length) {
    showError("Choose or drop one or more images first.");
    return;
  }
  const form = new FormData();
  for (const file of chosenFiles) form.append("images", file, file.name);
  const target = $("class-set").value;
  if (target === LABELS_OPTION) {
    const labels = parseLabels($("labels").value);
    if (!labels.length) {
      showError("Type at least one label, one per line.");
      return;
    }
    // As one JSON list: a lone label that starts with "[" is then not read as JSON by the API.
    form.append("labels", JSON.stringify(labels));
  } else if (target) {
    form.append("class_set", target);
  }
  form.append("top_k", $("top-k").value || "5");
  form.append("explain", "true");

  const button = $("classify");
  button.disabled = true;
  $("status").textContent = "Classifying…";
  const files = chosenFiles.slice();
  try {
    const response = await fetch("/v1/classify", { method: "POST", headers: authHeaders(), body: form });
    if (!response.ok) {
      $("results").replaceChildren();
      showError(await apiError(response));
      $("status").textContent = "";
      return;
    }
    renderResults(await response.json(), files, target === LABELS_OPTION);
    $("status").textContent = "Done.";
  } catch (err) {
    showError(`Could not reach the server: ${err.message}`);
    $("status").textContent = "";
  } finally {
    button.disabled = false;
  }
}

function init() {
  const zone = $("drop-zone");
  $("images").addEventListener("change", (e) => setFiles(e.target.files));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    setFiles([...e.dataTransfer.files].filter((f) => f.type.startsWith("image/") || !f.type));
  });
  $("class-set").addEventListener("change", () => { $("labels-row").hidden = $("class-set").value !== LABELS_OPTION; });
  $("api-key").addEventListener("change", loadClassSets);
  $("classify-form").addEventListener("submit", classify);
  loadClassSets();
  loadServerInfo();
}

document.addEventListener("DOMContentLoaded", init);
