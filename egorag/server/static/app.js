// egorag's search page: a text or image query -> the API's hits as cards; a card plays its
// scene in the player from the moment the query matched. Plain DOM, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const videos = new Map(); // video_id -> {path, duration}
let lastQuery = "";

function mmss(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${two(m)}:${two(r)}`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// The query's words (3+ letters, or any number) marked in the text; the text is escaped first.
function highlight(text, query) {
  const words = (query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []).filter((w) => w.length > 2 || /\d/.test(w));
  let html = escapeHtml(text);
  if (!words.length) return html;
  const stems = [...new Set(words.map((w) => (w.length > 5 ? w.slice(0, w.length - 2) : w)))];
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])(${stems.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})[\\p{L}\\p{N}]*`, "giu");
  return html.replace(pattern, "<mark>$&</mark>");
}

// Up to `max` characters of the text around its first marked word.
function excerpt(html, max = 320) {
  const plainLength = html.replace(/<[^>]+>/g, "").length;
  if (plainLength <= max) return html;
  const at = Math.max(0, html.indexOf("<mark>") - 80);
  let cut = html.slice(at);
  const close = cut.lastIndexOf(" ", max + 60);
  cut = cut.slice(0, close > 0 ? close : max + 60);
  if ((cut.match(/<mark>/g) || []).length > (cut.match(/<\/mark>/g) || []).length) cut += "</mark>";
  return (at > 0 ? "… " : "") + cut + " …";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let payload = null;
  try { payload = await response.json(); } catch { payload = null; }
  if (!response.ok) {
    if (response.status === 401) window.location.reload(); // the sign-in form
    throw new Error((payload && payload.error) || `${response.status} ${response.statusText}`);
  }
  return payload;
}

function filters() {
  const out = {};
  const video = $("video").value, from = $("from").value.trim(), to = $("to").value.trim();
  if (video) out.video = video;
  if (from) out.from = from;
  if (to) out.to = to;
  out.k = Math.min(100, Math.max(1, parseInt($("k").value, 10) || 10));
  return out;
}

async function loadVideos() {
  const list = await api("/videos");
  const select = $("video");
  for (const v of list) {
    videos.set(v.video_id, v);
    const option = document.createElement("option");
    option.value = v.video_id;
    option.textContent = v.path.split("/").pop();
    select.appendChild(option);
  }
  $("status").textContent = `${list.length} video${list.length === 1 ? "" : "s"} indexed`;
}

function play(hit, at, card) {
  const player = $("player");
  const src = `/videos/${encodeURIComponent(hit.video_id)}/media`;
  document.querySelectorAll(".card.playing").forEach((c) => c.classList.remove("playing"));
  if (card) card.classList.add("playing");
  $("now-playing").textContent = `${hit.video.split("/").pop()} from ${mmss(at)} (scene ${mmss(hit.start)}–${mmss(hit.end)})`;
  const seek = () => {
    player.currentTime = at;
    player.play().catch(() => {}); // autoplay may be refused; the position is set either way
  };
  if (player.getAttribute("src") !== src) {
    player.setAttribute("src", src);
    player.addEventListener("loadedmetadata", seek, { once: true });
    player.load();
  } else {
    seek();
  }
}

function bars(scores) {
  const entries = Object.entries(scores || {});
  const top = Math.max(1e-9, ...entries.map(([, v]) => Math.abs(v)));
  return entries.map(([name, value]) =>
    `<span class="bar" title="${escapeHtml(name)} added ${value.toFixed(3)} to the score">${escapeHtml(name)}` +
    `<i class="${value < 0 ? "neg" : ""}" style="width:${Math.round(40 * Math.abs(value) / top)}px"></i>${value.toFixed(2)}</span>`
  ).join("");
}

function card(hit, query) {
  const li = document.createElement("li");
  li.className = "card";
  li.dataset.sceneId = hit.scene_id;
  const at = hit.moment ?? hit.start;
  const name = hit.video.split("/").pop();
  const said = hit.transcript ? `<p class="text">${excerpt(highlight(hit.transcript, query))}</p>` : "";
  const shown = hit.screen_text ? `<p class="screen" title="on screen">${excerpt(highlight(hit.screen_text, query), 240)}</p>` : "";
  const caption = hit.caption && !said ? `<p class="text">${excerpt(highlight(hit.caption, query))}</p>` : "";
  li.innerHTML =
    `<img loading="lazy" alt="" src="/scenes/${encodeURIComponent(hit.scene_id)}/thumbnail">` +
    `<div><div class="title">${escapeHtml(name)}</div>` +
    `<button class="when" type="button" title="play from the scene's start">${mmss(hit.start)}–${mmss(hit.end)}</button>` +
    (hit.moment != null ? ` <span class="moment">· best match at ${mmss(hit.moment)}` +
      (hit.moment_source === "screen" ? `, shown: “${escapeHtml(hit.moment_text)}”` : "") + `</span>` : "") +
    said + shown + caption + `<div class="bars">${bars(hit.scores)}</div></div>`;
  li.querySelector("img").addEventListener("error", (e) => { e.target.style.visibility = "hidden"; });
  li.addEventListener("click", () => play(hit, at, li));
  li.querySelector(".when").addEventListener("click", (e) => { e.stopPropagation(); play(hit, hit.start, li); });
  return li;
}

// One strip per video with hits: where in the video they fall.
function strips(hits) {
  const box = $("strips");
  box.innerHTML = "";
  const byVideo = new Map();
  for (const h of hits) {
    if (!byVideo.has(h.video_id)) byVideo.set(h.video_id, []);
    byVideo.get(h.video_id).push(h);
  }
  for (const [videoId, group] of byVideo) {
    const duration = (videos.get(videoId) || {}).duration || Math.max(...group.map((h) => h.end));
    const strip = document.createElement("div");
    strip.className = "strip";
    strip.innerHTML = `${escapeHtml(group[0].video.split("/").pop())} · ${group.length} hit${group.length === 1 ? "" : "s"}<div class="track"></div>`;
    const track = strip.querySelector(".track");
    for (const h of group) {
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.style.left = `${(100 * h.start) / duration}%`;
      mark.style.width = `${(100 * (h.end - h.start)) / duration}%`;
      mark.title = `${mmss(h.start)}–${mmss(h.end)}`;
      mark.addEventListener("click", () => play(h, h.moment ?? h.start, document.querySelector(`.card[data-scene-id="${CSS.escape(h.scene_id)}"]`)));
      track.appendChild(mark);
    }
    box.appendChild(strip);
  }
}

function render(result, query) {
  const list = $("hits");
  list.innerHTML = "";
  for (const hit of result.hits) list.appendChild(card(hit, query));
  strips(result.hits);
  $("status").textContent = result.hits.length ? `${result.hits.length} scene${result.hits.length === 1 ? "" : "s"} for ${result.query}` : `nothing found for ${result.query}`;
}

async function searchText(event) {
  event.preventDefault();
  const q = $("q").value;
  showError("");
  try {
    const result = await api("/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ q, ...filters() }),
    });
    lastQuery = q;
    render(result, q);
  } catch (err) {
    showError(err.message);
  }
}

async function searchImage(file) {
  if (!file) return;
  showError("");
  const form = new FormData();
  form.append("image", file, file.name || "image");
  const f = filters();
  for (const [key, value] of Object.entries(f)) form.append(key, String(value));
  if ($("q").value.trim()) form.append("q", $("q").value);
  try {
    const result = await api("/search/image", { method: "POST", body: form });
    lastQuery = $("q").value;
    render(result, lastQuery);
  } catch (err) {
    showError(err.message);
  }
}

function wireDrop() {
  const drop = $("drop");
  $("image").addEventListener("change", (e) => searchImage(e.target.files[0]));
  for (const target of [drop, document.body]) {
    target.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    target.addEventListener("dragleave", () => drop.classList.remove("over"));
    target.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const file = [...(e.dataTransfer.files || [])].find((f) => f.type.startsWith("image/"));
      if (file) searchImage(file);
      else showError("drop an image file (PNG, JPEG, ...) to search by picture");
    });
  }
}

$("search").addEventListener("submit", searchText);
wireDrop();
loadVideos().catch((err) => showError(err.message));
