"use strict";
// A slide page: the slide in OpenSeadragon, the probability map as a second tiled image over
// it, suspicious-region outlines in an SVG layer, top-K boxes as overlays, and a scale bar.
const ORDER_KEY = "mixsup.view.order";
const slideId = decodeURIComponent(location.pathname.split("/").pop());
const osdBox = document.getElementById("osd");
const body = document.body;
let viewer, slideImage, mapImage, info;

const el = (tag, attrs = {}, text = "") => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== "") e.textContent = text;
  return e;
};
const fmt = (v, d = 4) => (v === null || v === undefined) ? "-" : Number(v).toFixed(d);
const slideUrl = id => "/slide/" + encodeURIComponent(id);

function facts() {
  document.title = `${info.slide_id} - mixsup view`;
  document.getElementById("title").textContent = info.slide_id;
  const rows = [
    ["probability", fmt(info.probability)],
    ["call", `${info.prediction ? "positive" : "negative"} (p >= ${fmt(info.threshold, 3)})`],
    ["true label", info.label === null ? "unknown" : (info.label ? "positive" : "negative")],
    ["outcome", info.outcome || "-"], ["center", info.center || "-"],
    ["size", `${info.width} x ${info.height} px` + (info.mpp ? ` at ${info.mpp.toFixed(3)} µm/px` : "")],
    ["patches scored", String(info.n_patches)], ["mode", info.mode || "unknown"]];
  document.getElementById("facts").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function colorbar() {
  const stops = info.colorbar.map((c, i) => `rgb(${c.join(",")}) ${(100 * i / (info.colorbar.length - 1)).toFixed(0)}%`);
  document.querySelector("#colorbar .ramp").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
}

function neighbours(order) {
  const i = order.indexOf(slideId);
  const prev = i > 0 ? order[i - 1] : null, next = i >= 0 && i < order.length - 1 ? order[i + 1] : null;
  for (const [id, target] of [["prev", prev], ["next", next]]) {
    const a = document.getElementById(id);
    if (target) { a.href = slideUrl(target); a.title += `: ${target}`; } else a.removeAttribute("href");
  }
  document.getElementById("position").textContent = i >= 0 ? `${i + 1} / ${order.length}` : "";
  return {prev, next};
}

function flyTo(t) {
  const pad = t.size;
  const rect = slideImage.imageToViewportRectangle(t.x - pad, t.y - pad, t.size + 2 * pad, t.size + 2 * pad);
  viewer.viewport.fitBounds(rect);
  document.querySelectorAll(".active").forEach(e => e.classList.remove("active"));
  document.querySelectorAll(`[data-rank="${t.rank}"]`).forEach(e => e.classList.add("active"));
}

// What each mode's top-K columns and map hold: [score column, ranking column, map legend]
const LABELS = {
  image: ["patch p (θ1)", "patch p", "probability map"],
  abmil: ["instance p", "attention / max", "attention map (share of the slide's highest)"],
};
const DEFAULT_LABELS = ["θ2 score", "max pixel p", "probability map"];

function topk() {
  const [scoreHead, rankHead, legend] = LABELS[info.mode] || DEFAULT_LABELS;
  document.getElementById("score-head").textContent = scoreHead;
  document.getElementById("rank-head").textContent = rankHead;
  document.getElementById("map-legend").textContent = legend;
  const rows = info.topk.map(t => {
    const box = el("div", {class: "topk-box", "data-rank": String(t.rank),
                           title: `#${t.rank}: ${scoreHead} ${fmt(t.patch_prob)}, ${rankHead} ${fmt(t.max_pixel_prob)}`});
    box.append(el("span", {}, `#${t.rank}`));
    box.addEventListener("click", () => flyTo(t));
    viewer.addOverlay({element: box, location: slideImage.imageToViewportRectangle(t.x, t.y, t.size, t.size)});
    const tr = el("tr", {"data-rank": String(t.rank)});
    tr.append(el("td", {}, String(t.rank)), el("td", {}, fmt(t.patch_prob)), el("td", {}, fmt(t.max_pixel_prob)));
    tr.addEventListener("click", () => flyTo(t));
    return tr;
  });
  document.querySelector("#topk tbody").replaceChildren(...rows);
  body.dataset.boxes = String(document.querySelectorAll(".topk-box").length);
}

function regions() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "regions");
  const g = document.createElementNS(ns, "g");
  svg.append(g);
  const ring = r => "M" + r.map(p => `${p[0]} ${p[1]}`).join("L") + "Z";
  const layer = (cls, geoms) => {
    const sub = document.createElementNS(ns, "g");
    sub.setAttribute("class", cls);
    for (const geom of geoms) {
      const polys = geom.type === "Polygon" ? [geom.coordinates]
        : geom.type === "MultiPolygon" ? geom.coordinates : [];
      const path = document.createElementNS(ns, "path");
      path.setAttribute("d", polys.map(p => p.map(ring).join("")).join(""));
      sub.append(path);
    }
    g.append(sub);
  };
  const truth = info.annotations;
  if (truth) {  // the dataset's pixel labels, under the predictions
    layer("roi", truth.roi);
    layer("truth", truth.tumor);
    document.getElementById("truth").hidden = false;
    document.getElementById("truth-file").textContent = truth.error
      ? `${truth.file}: not shown (${truth.error})` : truth.file;
    body.dataset.truth = String(truth.tumor.length + truth.roi.length);
  }
  layer("suspicious", info.regions);
  viewer.canvas.append(svg);
  body.dataset.regions = String(info.regions.length);
  return g;
}

function niceLength(um) {
  const p = Math.pow(10, Math.floor(Math.log10(um)));
  return [5, 2, 1].map(m => m * p).find(v => v <= um) || p;
}

function update(g) {
  const o = slideImage.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
  const x = slideImage.imageToViewerElementCoordinates(new OpenSeadragon.Point(1, 0));
  g.setAttribute("transform", `translate(${o.x} ${o.y}) scale(${x.x - o.x})`);
  const bar = document.getElementById("scalebar");
  if (!info.mpp) { bar.querySelector("span").textContent = "no scale: the slide has no µm/px"; return; }
  const pxPerUm = (x.x - o.x) / info.mpp;  // screen pixels per micrometre
  const um = niceLength(120 / pxPerUm);
  bar.querySelector(".bar").style.width = `${Math.round(um * pxPerUm)}px`;
  bar.querySelector("span").textContent = um >= 1000 ? `${um / 1000} mm` : `${um} µm`;
}

function controls(order) {
  const opacity = document.getElementById("opacity"), show = document.getElementById("show-overlay");
  const setOpacity = () => { if (mapImage) mapImage.setOpacity(show.checked ? opacity.value / 100 : 0); };
  opacity.addEventListener("input", setOpacity);
  show.addEventListener("change", setOpacity);
  document.getElementById("show-regions").addEventListener("change", e => osdBox.classList.toggle("hide-regions", !e.target.checked));
  document.getElementById("show-boxes").addEventListener("change", e => osdBox.classList.toggle("hide-boxes", !e.target.checked));
  document.getElementById("show-truth").addEventListener("change", e => osdBox.classList.toggle("hide-truth", !e.target.checked));
  const {prev, next} = neighbours(order);
  document.addEventListener("keydown", e => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "n" && next) location.href = slideUrl(next);
    else if (e.key === "p" && prev) location.href = slideUrl(prev);
    else if (e.key === "Escape") location.href = "/";
    else if (e.key === "h") viewer.viewport.goHome();
    else if (e.key === "o") { show.checked = !show.checked; setOpacity(); }
    else if (e.key === "a") document.getElementById("show-truth").click();
    else if (/^[1-9]$/.test(e.key) && info.topk[Number(e.key) - 1]) flyTo(info.topk[Number(e.key) - 1]);
  });
  return setOpacity;
}

async function main() {
  const [detail, list] = await Promise.all([fetch("/api/slides/" + encodeURIComponent(slideId)), fetch("/api/slides")]);
  if (!detail.ok) throw new Error(await detail.json().then(j => j.error, () => detail.statusText));
  info = await detail.json();
  const saved = JSON.parse(sessionStorage.getItem(ORDER_KEY) || "null");
  const order = Array.isArray(saved) && saved.includes(slideId) ? saved : (await list.json()).slides.map(s => s.slide_id);
  facts();
  colorbar();
  viewer = OpenSeadragon({element: osdBox, prefixUrl: "/static/vendor/openseadragon/images/",
                          drawer: "canvas", tileSources: info.slide_dzi, showNavigator: true, navigatorPosition: "TOP_RIGHT",
                          maxZoomPixelRatio: 4, gestureSettingsMouse: {clickToZoom: false}});
  const setOpacity = controls(order);
  let tiles = 0;
  viewer.addHandler("tile-loaded", () => { body.dataset.tiles = String(++tiles); });
  viewer.addOnceHandler("open", () => {
    slideImage = viewer.world.getItemAt(0);
    const g = regions();
    topk();
    viewer.addHandler("update-viewport", () => update(g));
    update(g);
    if (info.overlay) {
      document.getElementById("floor").textContent = `(painted where p >= ${info.overlay.floor})`;
      viewer.addTiledImage({tileSource: info.overlay.dzi, x: 0, y: 0, width: info.overlay.width,
                            success: e => { mapImage = e.item; setOpacity(); body.dataset.overlay = "loaded"; },
                            error: e => { body.dataset.overlay = "failed"; console.error(e); }});
    } else body.dataset.overlay = "none";
  });
}

main().catch(err => { osdBox.replaceChildren(el("p", {class: "error"}, `could not open this slide: ${err.message || err}`)); });
