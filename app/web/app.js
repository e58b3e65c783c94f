// The vgloss web page: talks to the public /v1 API only, with the API key the user types.
"use strict";

const LABELS_OPTION = "__labels__";
const $ = (id) => document.getElementById(id);
let chosenFiles = [];

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

async function loadClassSets() {
  const select = $("class-set");
  const previous = select.value;
  select.replaceChildren(new Option("(server default)", ""));
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
  return text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderResults(body, files) {
  const section = $("results");
  section.replaceChildren(el("p", "meta", `class set ${body.class_set} · model ${body.model}`));
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
        if (p.evidence) row.append(el("div", "evidence", p.evidence));
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
      showError("Type at least one label, separated by commas or new lines.");
      return;
    }
    for (const label of labels) form.append("labels", label);  // one field per label
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
    renderResults(await response.json(), files);
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
}

document.addEventListener("DOMContentLoaded", init);
