// The defectlens page: inspect one image, and (with `defectlens review`) review a run's results.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("defectlens-api-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("defectlens-api-key", keyInput.value);
  start();
});

function headers(extra = {}) {
  return keyInput.value ? { "X-API-Key": keyInput.value, ...extra } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return response;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// ---------------------------------------------------------------------------------- inspect one image
async function inspect(file) {
  showError("");
  const started = performance.now();
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const answer = await (await api("/v1/predict?include=overlay&task=detection", { method: "POST", body: form })).json();
    const p = answer.predictions[0];
    $("overlay").src = "data:image/png;base64," + p.overlay_png;
    $("score").textContent = p.score.toFixed(3);
    $("label").textContent = p.label;
    $("label").className = p.label;
    $("raw-score").textContent = p.raw_score.toPrecision(5);
    // One decision per image: a normal image has no defect boxes, only regions below the image threshold.
    const below = p.below_image_threshold || [];
    $("boxes").textContent = p.boxes.length
      ? p.boxes.map((b) => `[${b.slice(0, 4).join(", ")}] ${b[4].toFixed(2)}`).join("; ")
      : below.length ? `none (${below.length} region(s) below the image threshold)` : "none";
    $("elapsed").textContent = `${Math.round(performance.now() - started)} ms`;
    $("result").hidden = false;
  } catch (error) {
    showError(error.message);
  }
}

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) inspect(event.dataTransfer.files[0]);
});
$("file").addEventListener("change", (event) => { if (event.target.files.length) inspect(event.target.files[0]); });

// ---------------------------------------------------------------------------------- review gallery
let items = [];

function threshold() { return parseFloat($("threshold").value); }

function renderCounts() {
  const t = threshold();
  $("threshold-value").textContent = t.toFixed(2);
  const flagged = items.filter((item) => item.score >= t).length;
  $("flagged").textContent = `${flagged} of ${items.length} flagged at ${t.toFixed(2)}`;
}

function visible(item) {
  const filter = $("filter").value;
  const flagged = item.score >= threshold();
  if (filter === "anomalous") return flagged;
  if (filter === "normal") return !flagged;
  if (filter === "unmarked") return !item.mark;
  return true;
}

async function setMark(item, mark, card) {
  const next = item.mark === mark ? null : mark;  // pressing the active button clears the mark
  try {
    await api(`/v1/review/marks/${item.id}`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ mark: next }),
    });
    item.mark = next;
    card.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.mark === next));
  } catch (error) {
    showError(error.message);
  }
}

async function loadThumbnail(item, img) {
  try {
    const blob = await (await api(`/v1/review/thumbnail/${item.id}`)).blob();
    img.src = URL.createObjectURL(blob);
  } catch (error) {
    img.alt = error.message;
  }
}

function card(item) {
  const div = document.createElement("div");
  div.className = "card" + (item.score >= threshold() ? " flagged" : "");
  div.dataset.id = item.id;
  const img = document.createElement("img");
  img.alt = item.name;
  img.loading = "lazy";
  loadThumbnail(item, img);
  const truth = item.truth ? ` · truth ${item.truth}` : "";
  div.innerHTML = `<div class="name" title="${item.path}">${item.name}</div>
    <div>score <b class="score">${item.score.toFixed(3)}</b> · <span class="${item.label}">${item.label}</span>${truth}</div>`;
  div.prepend(img);
  const buttons = document.createElement("div");
  for (const [mark, text] of [["good", "actually good"], ["defective", "actually defective"]]) {
    const button = document.createElement("button");
    button.dataset.mark = mark;
    button.textContent = text;
    button.classList.toggle("active", item.mark === mark);
    button.addEventListener("click", () => setMark(item, mark, div));
    buttons.append(button);
  }
  div.append(buttons);
  return div;
}

function renderGallery() {
  renderCounts();
  const gallery = $("gallery");
  gallery.replaceChildren(...items.filter(visible).map(card));
}

$("threshold").addEventListener("input", () => {
  renderCounts();
  document.querySelectorAll(".card").forEach((div) => {
    const item = items[parseInt(div.dataset.id, 10)];
    div.classList.toggle("flagged", item.score >= threshold());
  });
});
$("threshold").addEventListener("change", renderGallery);
$("filter").addEventListener("change", renderGallery);

// ---------------------------------------------------------------------------------- start
async function start() {
  try {
    const health = await (await fetch("/v1/health")).json();
    const info = await (await api("/v1/model")).json();
    $("model-info").textContent =
      `${info.model} · ${info.runtime} · input ${info.input_size.join("×")} · defectlens ${info.defectlens_version}`;
    if (health.review) {
      const answer = await (await api("/v1/review/items")).json();
      items = answer.items.sort((a, b) => a.id - b.id);
      $("review").hidden = false;
      renderGallery();
    }
    showError("");
  } catch (error) {
    $("model-info").textContent = "not connected";
    showError(error.message);
  }
}

start();
