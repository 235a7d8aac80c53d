"use strict";
// The slide list: metrics at the top when labels are known, a sortable table below.
const ORDER_KEY = "mixsup.view.order";
let rows = [];
let sortKey = "probability", sortDir = -1;

const fmt = (v, d = 4) => (v === null || v === undefined) ? "" : (typeof v === "number" ? v.toFixed(d) : String(v));
const el = (tag, attrs = {}, text = "") => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== "") e.textContent = text;
  return e;
};

function metric(name, value, title = "") {
  const d = el("div", {class: "metric", title});
  d.append(el("b", {}, value), document.createTextNode(name));
  return d;
}

function showMetrics(data) {
  const m = data.metrics, box = document.getElementById("metrics");
  if (!m) return;
  box.hidden = false;
  box.append(
    metric("AUC", fmt(m.auc, 3)),
    metric("specificity @ 100% sensitivity", fmt(m.specificity_at_full_sensitivity, 3),
           `threshold ${fmt(m.threshold_at_full_sensitivity)}`),
    metric(`sensitivity @ ${fmt(data.threshold, 3)}`, fmt(m.sensitivity, 3)),
    metric(`specificity @ ${fmt(data.threshold, 3)}`, fmt(m.specificity, 3)),
    metric("TP / FP / TN / FN", `${m.tp} / ${m.fp} / ${m.tn} / ${m.fn}`),
    metric("positives / negatives", `${m.n_pos} / ${m.n_neg}`,
           m.n_unlabelled ? `${m.n_unlabelled} unlabelled slide(s) left out` : ""));
  if (m.per_center) {
    const t = el("table", {class: "metric"});
    t.append(el("caption", {}, "per center"));
    const head = el("tr");
    ["center", "AUC", "spec@sens 1", "sens", "spec", "n+/n-"].forEach(h => head.append(el("th", {}, h)));
    t.append(head);
    for (const [c, cm] of Object.entries(m.per_center)) {
      const r = el("tr");
      [c, fmt(cm.auc, 3), fmt(cm.specificity_at_full_sensitivity, 3), fmt(cm.sensitivity, 3),
       fmt(cm.specificity, 3), `${cm.n_pos}/${cm.n_neg}`].forEach(v => r.append(el("td", {}, v)));
      t.append(r);
    }
    box.append(t);
  }
}

function render() {
  const body = document.querySelector("#slides tbody");
  const cmp = (a, b) => {
    const x = a[sortKey], y = b[sortKey];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;  // unknowns last either way
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * sortDir;
  };
  rows.sort(cmp);
  body.replaceChildren(...rows.map(s => {
    const tr = el("tr", {class: (s.outcome ? `outcome-${s.outcome}` : "") + (s.missing ? " missing" : ""),
                         "data-id": s.slide_id, title: s.missing ? "the slide file is missing" : ""});
    const prob = el("td", {class: "num"}, fmt(s.probability));
    prob.append(el("span", {class: "pbar", style: `width:${Math.round(60 * s.probability)}px`}));
    const outcome = el("td");
    if (s.outcome) outcome.append(el("span", {class: "badge", title: {
      FN: "false negative", FP: "false positive", TP: "true positive", TN: "true negative"}[s.outcome]}, s.outcome));
    tr.append(el("td", {class: "num"}, String(s.rank)), el("td", {}, s.slide_id + (s.missing ? " (file missing)" : "")), prob,
              el("td", {class: `call-${s.prediction}`}, s.prediction ? "positive" : "negative"),
              el("td", {}, s.label === null ? "" : (s.label ? "positive" : "negative")),
              el("td", {}, s.center || ""), outcome,
              el("td", {class: "num"}, fmt(s.top_pixel_prob, 3)),
              el("td", {class: "num"}, String(s.n_patches)));
    tr.addEventListener("click", () => { location.href = "/slide/" + encodeURIComponent(s.slide_id); });
    return tr;
  }));
  document.querySelectorAll("#slides th").forEach(th => {
    th.classList.toggle("asc", th.dataset.key === sortKey && sortDir > 0);
    th.classList.toggle("desc", th.dataset.key === sortKey && sortDir < 0);
  });
  sessionStorage.setItem(ORDER_KEY, JSON.stringify(rows.map(s => s.slide_id)));
  document.body.dataset.rows = String(rows.length);
}

fetch("/api/slides").then(r => r.json()).then(data => {
  document.getElementById("folder").textContent = data.folder;
  const errors = data.slides.filter(s => s.outcome === "FN" || s.outcome === "FP").length;
  document.getElementById("summary").textContent =
    `${data.slides.length} slides; call: probability >= ${fmt(data.threshold)} (the bundle's operating threshold)` +
    (data.mode ? `; mode ${data.mode}` : "") + (data.metrics ? `; ${errors} misclassified` : "; no labels (pass --data)");
  rows = data.slides.map((s, i) => ({...s, rank: i + 1}));
  showMetrics(data);
  document.querySelectorAll("#slides th").forEach(th => th.addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDir = -sortDir;
    else { sortKey = th.dataset.key; sortDir = th.dataset.type === "num" ? -1 : 1; }
    render();
  }));
  render();
}).catch(err => {
  document.body.append(el("p", {class: "error"}, `could not load the slide list: ${err}`));
});
