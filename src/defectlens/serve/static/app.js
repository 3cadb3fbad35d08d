// The defectlens page: inspect one image, watch score drift, and (with `defectlens review`) review a run.
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

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

// ---------------------------------------------------------------------------------- scoring
// Card pictures wait while a predict is in flight, so that scoring never queues behind them. What the
// page scores is a person's check, not a part on the line: publish=false keeps it out of the sinks and
// the drift monitor.
let predictsInFlight = 0;

async function predict(file, name) {
  predictsInFlight += 1;
  try {
    const form = new FormData();
    form.append("file", file, name);
    const answer = await api("/v1/predict?include=overlay&task=detection&publish=false", { method: "POST", body: form });
    return (await answer.json()).predictions[0];
  } finally {
    predictsInFlight -= 1;
    pumpThumbnails();
  }
}

function describeBoxes(p) {
  // One decision per image: a normal image has no defect boxes, only regions below the image threshold.
  const below = p.below_image_threshold || [];
  const box = (b) => `[${b.slice(0, 4).join(", ")}] ${b[4].toFixed(2)}`;
  if (p.boxes.length) return p.boxes.map(box).join("; ");
  return below.length ? `none (${below.length} region(s) below the image threshold)` : "none";
}

async function inspect(file) {
  showError("");
  const started = performance.now();
  try {
    const p = await predict(file, file.name);
    $("overlay").src = "data:image/png;base64," + p.overlay_png;
    $("score").textContent = p.score.toFixed(3);
    $("label").textContent = p.label;
    $("label").className = p.label;
    $("raw-score").textContent = p.raw_score.toPrecision(5);
    $("boxes").textContent = describeBoxes(p);
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

// ---------------------------------------------------------------------------------- card pictures
// Only cards on or next to the screen ask for their picture, at most THUMBNAILS_IN_FLIGHT at a time,
// and a card scrolled away before its turn never asks.
const THUMBNAILS_IN_FLIGHT = 4;
const THUMBNAILS_KEPT = 500;  // object URLs kept, so that scrolling back shows pictures at once
const thumbnailUrls = new Map();  // item id -> object URL, least recently used first
const thumbnailErrors = new Map();  // item id -> why its picture failed (not asked for again)
const thumbnailsLoading = new Set();
let thumbnailQueue = [];  // ids of rendered cards without a picture, those on screen first

function thumbnailUrl(id) {
  const url = thumbnailUrls.get(id);
  if (url !== undefined) {  // most recently used goes last
    thumbnailUrls.delete(id);
    thumbnailUrls.set(id, url);
  }
  return url;
}

function keepThumbnail(id, url) {
  thumbnailUrls.set(id, url);
  for (const [oldId, oldUrl] of thumbnailUrls) {
    if (thumbnailUrls.size <= THUMBNAILS_KEPT) break;
    if (rendered.has(oldId)) continue;
    URL.revokeObjectURL(oldUrl);
    thumbnailUrls.delete(oldId);
  }
}

function pumpThumbnails() {
  while (!predictsInFlight && thumbnailsLoading.size < THUMBNAILS_IN_FLIGHT && thumbnailQueue.length) {
    const id = thumbnailQueue.shift();
    if (rendered.has(id) && !thumbnailUrls.has(id) && !thumbnailsLoading.has(id)) loadThumbnail(id);
  }
}

async function loadThumbnail(id) {
  thumbnailsLoading.add(id);
  try {
    const blob = await (await api(`/v1/review/thumbnail/${id}`)).blob();
    keepThumbnail(id, URL.createObjectURL(blob));
    const card = rendered.get(id);
    if (card) card.querySelector("img").src = thumbnailUrls.get(id);
  } catch (error) {
    thumbnailErrors.set(id, error.message);
    const card = rendered.get(id);
    if (card) card.querySelector("img").alt = error.message;
  } finally {
    thumbnailsLoading.delete(id);
    pumpThumbnails();
  }
}

// ---------------------------------------------------------------------------------- review gallery
// A virtual grid: only the rows on or next to the screen exist as cards, so 10,000 results cost what 50 do.
const CARD_MIN_WIDTH = 200;
const CARD_HEIGHT = 236;
const CARD_GAP = 12;
const ROW_HEIGHT = CARD_HEIGHT + CARD_GAP;
const ROWS_AROUND = 1;  // rows rendered (and their pictures fetched) above and below the screen
let items = [];
let shown = [];  // the items passing the filters, highest score first
let selected = -1;  // index into `shown`
let columns = 1;
let cardWidth = CARD_MIN_WIDTH;
const rendered = new Map();  // item id -> its card element

function threshold() { return parseFloat($("threshold").value); }

function renderCounts() {
  const t = threshold();
  $("threshold-value").textContent = t.toFixed(2);
  const flagged = items.filter((item) => item.score >= t).length;
  $("flagged").textContent = `${flagged} of ${items.length} flagged at ${t.toFixed(2)}`;
  $("shown-count").textContent = `showing ${shown.length}`;
}

function passes(item) {
  const flagged = item.score >= threshold();
  const filter = $("filter").value;
  const type = $("defect-type").value;
  const mark = $("mark").value;
  if ((filter === "anomalous" && !flagged) || (filter === "normal" && flagged)) return false;
  if (type && item.defect_type !== type) return false;
  if (mark === "unmarked") return !item.mark;
  return !mark || item.mark === mark;
}

function applyFilters() {
  const current = shown[selected];
  shown = items.filter(passes);
  selected = shown.length ? Math.max(0, shown.indexOf(current)) : -1;
  renderCounts();
  layout();
  renderWindow();
}

function layout() {
  const gallery = $("gallery");
  columns = Math.max(1, Math.floor((gallery.clientWidth + CARD_GAP) / (CARD_MIN_WIDTH + CARD_GAP)));
  cardWidth = (gallery.clientWidth - (columns - 1) * CARD_GAP) / columns;
  gallery.style.height = `${Math.ceil(shown.length / columns) * ROW_HEIGHT}px`;
}

function renderWindow() {
  const top = $("gallery").getBoundingClientRect().top;  // negative once scrolled past
  const rows = Math.ceil(shown.length / columns);
  const firstOnScreen = clamp(Math.floor(-top / ROW_HEIGHT), 0, rows);
  const endOnScreen = clamp(Math.ceil((innerHeight - top) / ROW_HEIGHT), firstOnScreen, rows);
  const first = Math.max(0, firstOnScreen - ROWS_AROUND);
  const end = Math.min(rows, endOnScreen + ROWS_AROUND);
  const indices = (fromRow, toRow) => {
    const stop = Math.min(shown.length, toRow * columns);
    return Array.from({ length: Math.max(0, stop - fromRow * columns) }, (_, k) => fromRow * columns + k);
  };
  // pictures on screen first, then the rows below (where one scrolls), then above
  const order = [
    ...indices(firstOnScreen, endOnScreen), ...indices(endOnScreen, end), ...indices(first, firstOnScreen),
  ];
  const wanted = new Set(order.map((i) => shown[i].id));
  for (const [id, card] of rendered) {
    if (!wanted.has(id)) {
      card.remove();
      rendered.delete(id);
    }
  }
  const gallery = $("gallery");
  for (const i of order) {
    const item = shown[i];
    let card = rendered.get(item.id);
    if (!card) {
      card = createCard(item);
      rendered.set(item.id, card);
      gallery.append(card);
    }
    Object.assign(card.style, {
      left: `${(i % columns) * (cardWidth + CARD_GAP)}px`,
      top: `${Math.floor(i / columns) * ROW_HEIGHT}px`,
      width: `${cardWidth}px`,
      height: `${CARD_HEIGHT}px`,
    });
    card.classList.toggle("selected", i === selected);
    card.classList.toggle("flagged", item.score >= threshold());
  }
  thumbnailQueue = order.map((i) => shown[i].id)
    .filter((id) => !thumbnailUrls.has(id) && !thumbnailErrors.has(id));
  pumpThumbnails();
}

let renderPending = false;
function renderSoon() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderWindow();
  });
}
addEventListener("scroll", renderSoon, { passive: true });
addEventListener("resize", () => {
  if ($("review").hidden) return;
  layout();
  renderWindow();
});

function markButtons(item) {
  const buttons = document.createElement("div");
  buttons.className = "marks";
  for (const [mark, text] of [["good", "actually good"], ["defective", "actually defective"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.mark = mark;
    button.textContent = text;
    button.classList.toggle("active", item.mark === mark);
    button.addEventListener("click", (event) => {
      event.stopPropagation();  // marking a card does not open its detail view
      setMark(item, mark);
    });
    buttons.append(button);
  }
  return buttons;
}

function facts(item) {
  const line = document.createElement("div");
  const score = document.createElement("b");
  score.className = "score";
  score.textContent = item.score.toFixed(3);
  const label = document.createElement("span");
  label.className = item.label;
  label.textContent = item.label;
  const truth = item.truth ? ` · truth ${item.truth}${item.defect_type ? ` (${item.defect_type})` : ""}` : "";
  line.append("score ", score, " · ", label, truth);
  return line;
}

function createCard(item) {
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.id = item.id;
  const img = document.createElement("img");
  img.alt = thumbnailErrors.get(item.id) || item.name;
  const url = thumbnailUrl(item.id);
  if (url) img.src = url;
  const name = document.createElement("div");
  name.className = "name";
  name.title = item.path;
  name.textContent = item.name;
  card.append(img, name, facts(item), markButtons(item));
  card.addEventListener("click", () => {
    select(shown.indexOf(item));
    openDetail();
  });
  return card;
}

async function setMark(item, mark) {
  const next = item.mark === mark ? null : mark;  // marking again with the same mark clears it
  try {
    await api(`/v1/review/marks/${item.id}`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ mark: next }),
    });
    item.mark = next;
    const holders = [rendered.get(item.id)];
    if (!$("detail").hidden && shown[selected] === item) holders.push($("detail-marks"));
    for (const holder of holders.filter(Boolean)) {
      for (const button of holder.querySelectorAll("button[data-mark]")) {
        button.classList.toggle("active", button.dataset.mark === next);
      }
    }
  } catch (error) {
    showError(error.message);
  }
}

function select(index) {
  if (!shown.length) return;
  selected = clamp(index, 0, shown.length - 1);
  const galleryTop = $("gallery").getBoundingClientRect().top + scrollY;
  const rowTop = galleryTop + Math.floor(selected / columns) * ROW_HEIGHT;
  const rowBottom = rowTop + CARD_HEIGHT;
  if (rowTop < scrollY) scrollTo(0, rowTop - CARD_GAP);
  else if (rowBottom > scrollY + innerHeight) scrollTo(0, rowBottom + CARD_GAP - innerHeight);
  renderWindow();
  if (!$("detail").hidden) showDetail(shown[selected]);
}

$("threshold").addEventListener("input", () => {
  renderCounts();
  for (const [id, card] of rendered) card.classList.toggle("flagged", items[id].score >= threshold());
});
for (const control of ["threshold", "filter", "defect-type", "mark"]) {
  $(control).addEventListener("change", applyFilters);
}

document.addEventListener("keydown", (event) => {
  if ($("review").hidden || !shown.length || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target.closest("input, select, textarea")) return;  // the key belongs to that control
  const detailOpen = !$("detail").hidden;
  const steps = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns };
  if (event.key in steps) {
    // the detail view shows one image: every arrow goes to the previous or next one
    select(selected + (detailOpen ? Math.sign(steps[event.key]) : steps[event.key]));
  } else if (event.key === "g" || event.key === "d") {
    setMark(shown[selected], event.key === "g" ? "good" : "defective");
  } else if (event.key === "Enter" && !event.target.closest("button")) {
    openDetail();
  } else if (event.key === "Escape" && detailOpen) {
    closeDetail();
  } else {
    return;
  }
  event.preventDefault();
});

// ---------------------------------------------------------------------------------- detail view
// The full-size overlay is scored again through POST /v1/predict (one image, when asked for); the
// ground-truth outline is a transparent picture laid over it.
const DETAIL_DELAY_MS = 150;  // arrowing quickly through the detail view scores only where it stops
let detailRequest = 0;  // number of the latest request: answers to older ones are dropped
let truthUrl = null;

function openDetail() {
  if (!shown[selected]) return;
  $("detail").hidden = false;
  showDetail(shown[selected]);
}

function closeDetail() {
  $("detail").hidden = true;
  detailRequest += 1;
}

async function showDetail(item) {
  const request = ++detailRequest;
  $("detail-name").textContent = item.name;
  $("detail-name").title = item.path;
  $("detail-facts").replaceChildren(facts(item));
  $("detail-marks").replaceChildren(markButtons(item));
  const overlay = $("detail-overlay");
  const placeholder = thumbnailUrl(item.id);  // the card's picture until the full size arrives
  if (placeholder) overlay.src = placeholder;
  else overlay.removeAttribute("src");
  $("detail-truth").hidden = true;
  $("detail-status").textContent = "scoring the full-size image…";
  await new Promise((resolve) => setTimeout(resolve, DETAIL_DELAY_MS));
  if (request !== detailRequest) return;
  try {
    const truth = item.has_truth_mask ? api(`/v1/review/truth/${item.id}`).then((r) => r.blob()) : null;
    const image = await (await api(`/v1/review/image/${item.id}`)).blob();
    if (request !== detailRequest) return;
    const [p, outline] = await Promise.all([predict(image, item.name), truth]);
    if (request !== detailRequest) return;
    overlay.src = "data:image/png;base64," + p.overlay_png;
    if (outline) {
      if (truthUrl) URL.revokeObjectURL(truthUrl);
      truthUrl = URL.createObjectURL(outline);
      $("detail-truth").src = truthUrl;
      $("detail-truth").hidden = false;
    }
    const truthNote = outline ? "green outline: ground truth" : "no ground-truth mask";
    $("detail-status").textContent = `boxes: ${describeBoxes(p)} · ${truthNote}`;
  } catch (error) {
    if (request === detailRequest) $("detail-status").textContent = error.message;
  }
}

$("detail-close").addEventListener("click", closeDetail);
$("detail").addEventListener("click", (event) => { if (event.target === $("detail")) closeDetail(); });

// ---------------------------------------------------------------------------------- drift
// GET /v1/drift: the recent scores against the calibration; hidden where the service has no monitor
// (404) or has seen no image yet.
const DRIFT_REFRESH_MS = 2000;
const CHART = { width: 360, height: 100, pad: 12 };
let driftLoop = 0;  // start() begins a new refresh loop (with the new API key); older loops end

async function refreshDrift(loop) {
  let drift = null;
  try {
    const response = await fetch("/v1/drift", { headers: headers() });
    if (loop !== driftLoop) return;
    if (response.status === 404) {  // no drift monitor on this service: stop asking
      $("drift").hidden = true;
      return;
    }
    if (response.ok) drift = await response.json();
  } catch (_) { /* the service is unreachable: ask again later */ }
  if (loop !== driftLoop) return;
  $("drift").hidden = !drift || !drift.count;
  if (!$("drift").hidden) drawDrift(drift);
  setTimeout(() => refreshDrift(loop), DRIFT_REFRESH_MS);
}

function drawDrift(drift) {
  const now = drift.current;
  const levels = drift.levels;
  const percent = (share) => `${(100 * share).toFixed(1)} %`;
  $("drift-state").className = drift.alarm ? "anomalous" : "normal";
  $("drift-state").textContent =
    `${drift.alarm ? "ALARM" : "no alarm"}: PSI ${now.psi.toFixed(3)} (alarm at ${levels.psi}), ` +
    `KS p-value ${now.ks_pvalue.toPrecision(2)} (alarm below ${levels.ks_pvalue}); ` +
    `${percent(now.share_above)} above the threshold (expected ${percent(now.expected_share)}), ` +
    `mean raw score ${now.mean_score.toPrecision(4)}; over the last ${Math.min(drift.window, drift.count)} ` +
    `of ${drift.count} images`;
  drawSeries($("drift-psi"), drift.history, "psi", levels.psi);
  drawSeries($("drift-share"), drift.history, "share_above", now.expected_share);
}

function drawSeries(svg, history, key, level) {
  const { width, height, pad } = CHART;
  const top = Math.max(1.5 * level, ...history.map((point) => point[key])) || 1;
  const start = history.length ? history[0].time : 0;
  const span = history.length ? history[history.length - 1].time - start || 1 : 1;
  const x = (time) => (((time - start) / span) * width).toFixed(1);
  const y = (value) => (height - pad - (value / top) * (height - 2 * pad)).toFixed(1);
  const points = history.map((point) => `${x(point.time)},${y(point[key])}`).join(" ");
  const alarms = history.filter((point) => point.alarm)
    .map((point) => `<circle class="alarm" cx="${x(point.time)}" cy="${y(point[key])}" r="2"></circle>`);
  svg.innerHTML =
    `<line class="level" x1="0" x2="${width}" y1="${y(level)}" y2="${y(level)}"></line>` +
    `<polyline class="series" points="${points}"></polyline>${alarms.join("")}` +
    `<text x="2" y="${pad - 2}">${top.toPrecision(2)}</text><text x="2" y="${height - 2}">0</text>`;
}

// ---------------------------------------------------------------------------------- start
function fillDefectTypes() {
  const types = [...new Set(items.map((item) => item.defect_type).filter(Boolean))].sort();
  const options = types.map((type) => new Option(type, type));
  $("defect-type").replaceChildren(new Option("all types", ""), ...options);
  $("defect-type-filter").hidden = !types.length;
}

function clearGallery() {
  for (const card of rendered.values()) card.remove();
  rendered.clear();
  thumbnailErrors.clear();  // a picture refused for a wrong API key may load with the new one
}

async function start() {
  driftLoop += 1;
  refreshDrift(driftLoop);
  try {
    const health = await (await fetch("/v1/health")).json();
    const info = await (await api("/v1/model")).json();
    $("model-info").textContent =
      `${info.model} · ${info.runtime} · input ${info.input_size.join("×")} · defectlens ${info.defectlens_version}`;
    if (health.review) {
      const answer = await (await api("/v1/review/items")).json();
      items = answer.items.sort((a, b) => a.id - b.id);
      clearGallery();
      fillDefectTypes();
      $("review").hidden = false;
      applyFilters();
    }
    showError("");
  } catch (error) {
    $("model-info").textContent = "not connected";
    showError(error.message);
  }
}

start();
