// The dashboard: reads /summary every few seconds and shows, per source, the window's and the
// lifetime's metrics with their figures. Every number shown is /summary's own (data-value holds
// it unrounded); the figures' data is computed here from its additive statistics:
//   reliability: per confidence bin b, observed_b / n_b against predicted_b / n_b;
//   confusion: counts divided by their row's total (the class's support);
//   per class: precision, recall and F1 as /summary gives them, sorted by support.
"use strict";

const REFRESH_S = Number(new URLSearchParams(location.search).get("refresh"));
const REFRESH_MS = 1000 * (Number.isFinite(REFRESH_S) && REFRESH_S >= 1 ? REFRESH_S : 5);
const MAX_BARS = 40; // classes or labels with the most support, past which bars are unreadable
const MAX_MATRIX = 20; // classes up to which the confusion matrix is drawn; above: top pairs
const TOP_PAIRS = 10;
const DEFINITIONS = {
  accuracy: "correct / valid samples",
  balanced_accuracy: "mean recall over the classes that occur",
  macro_f1: "mean F1 over classes (multi-label: over labels)",
  micro_f1: "2 TP / (2 TP + FP + FN), summed over labels",
  weighted_f1: "F1 per class weighted by support",
  matthews_corrcoef: "Matthews correlation of the confusion matrix",
  mean_focal_loss: "sum of per-sample focal loss / valid samples",
  class_balanced_focal_loss: "mean over classes present of each class's mean focal loss",
  mean_cross_entropy: "sum of per-sample cross entropy / valid samples",
  expected_calibration_error: "sum over bins of n_b / N |accuracy_b - confidence_b|",
  brier_score: "mean over samples of sum_k (p_k - [k = y])^2",
  subset_accuracy: "samples whose every label is right / samples",
  hamming_loss: "wrong decisions / decisions",
  macro_auroc: "mean AUROC over labels with both classes (binned scores)",
  macro_average_precision: "mean average precision over labels with positives (binned scores)",
};
const HEADLINE = {
  multiclass: ["accuracy", "balanced_accuracy", "macro_f1", "matthews_corrcoef", "mean_focal_loss",
    "class_balanced_focal_loss", "mean_cross_entropy", "expected_calibration_error", "brier_score"],
  multilabel: ["micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "macro_auroc",
    "macro_average_precision", "mean_focal_loss", "expected_calibration_error", "brier_score"],
};
const CALIBRATION = { // statistics per task: [samples, predicted, observed]
  multiclass: ["bin_count", "bin_confidence_sum", "bin_correct"],
  multilabel: ["bin_count", "bin_probability_sum", "bin_positive"],
};
const SCOPES = ["window", "lifetime"];
const charts = new Map(); // "source/figure" -> Chart

function element(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

function shown(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : Number(value).toPrecision(4);
}

function metricsTable(source) {
  const table = element("table", { class: "metrics" });
  const head = table.createTHead().insertRow();
  for (const title of ["metric", "window", "lifetime"]) head.append(element("th", {}, title));
  const samples = table.createTBody().insertRow();
  samples.append(element("td", {}, "samples"));
  for (const scope of SCOPES) {
    samples.append(element("td", { "data-metric": "samples", "data-scope": scope,
      "data-value": String(source[scope].samples) }, shown(source[scope].samples)));
  }
  for (const metric of HEADLINE[source.task]) {
    const row = table.tBodies[0].insertRow();
    row.append(element("th", DEFINITIONS[metric] ? { title: DEFINITIONS[metric] } : {}, metric));
    for (const scope of SCOPES) {
      const value = source[scope].metrics ? source[scope].metrics[metric] : null;
      row.append(element("td", { "data-metric": metric, "data-scope": scope,
        "data-value": String(value) }, shown(value)));
    }
  }
  return table;
}

function reliability(task, statistics) {
  const [counts, predicted, observed] = CALIBRATION[task].map((name) => statistics[name]);
  const bins = counts.length;
  const centres = counts.map((_, b) => ((b + 0.5) / bins).toFixed(3));
  const ratio = (sums) => sums.map((s, b) => (counts[b] > 0 ? s / counts[b] : null));
  return { labels: centres, observed: ratio(observed), predicted: ratio(predicted), counts };
}

function byClass(task, metrics) {
  const order = metrics.support.map((s, k) => [s, k]).sort((a, b) => b[0] - a[0]).slice(0, MAX_BARS);
  const pick = (values) => order.map(([, k]) => values[k]);
  return {
    labels: order.map(([s, k]) => `${task === "multilabel" ? "label" : "class"} ${k} (${s})`),
    precision: pick(metrics.precision), recall: pick(metrics.recall), f1: pick(metrics.f1),
  };
}

function drawn(key, canvas, config) {
  const points = config.data.datasets.reduce(
    (n, set) => n + set.data.filter((v) => v !== null && v !== undefined).length, 0);
  canvas.dataset.points = String(points);
  if (typeof Chart === "undefined") return;
  const held = charts.get(key);
  if (held) {
    held.data = config.data;
    held.update("none");
  } else {
    charts.set(key, new Chart(canvas, config));
  }
}

function figure(section, id, caption) {
  let holder = section.querySelector(`figure[data-figure="${id}"]`);
  if (!holder) {
    holder = element("figure", { "data-figure": id });
    const box = element("div", { class: "chart" });
    box.append(element("canvas", { role: "img", "aria-label": caption }));
    holder.append(box, element("figcaption", {}, caption));
    section.querySelector(".figures").append(holder);
  }
  return holder.querySelector("canvas");
}

function drawReliability(name, section, source, statistics) {
  const data = reliability(source.task, statistics);
  const canvas = figure(section, "reliability", "Reliability over the window: observed frequency"
    + " (bars) against mean confidence (line) per confidence bin; the diagonal is perfect calibration");
  drawn(`${name}/reliability`, canvas, {
    data: {
      labels: data.labels,
      datasets: [
        { type: "bar", label: source.task === "multilabel" ? "positive fraction" : "accuracy",
          data: data.observed, backgroundColor: "#4878a8" },
        { type: "line", label: "mean confidence", data: data.predicted, borderColor: "#d8782e",
          spanGaps: true },
        { type: "line", label: "perfect", data: data.labels.map(Number), borderColor: "#999",
          borderDash: [4, 4], pointRadius: 0 },
      ],
    },
    options: { animation: false, maintainAspectRatio: false,
      scales: { y: { min: 0, max: 1 }, x: { title: { display: true, text: "confidence bin" } } } },
  });
}

function drawClasses(name, section, source, metrics) {
  const data = byClass(source.task, metrics);
  const noun = source.task === "multilabel" ? "label" : "class";
  const canvas = figure(section, "per-class", `Precision, recall and F1 per ${noun} over the window,`
    + ` by support (in brackets; the ${MAX_BARS} with most support)`);
  drawn(`${name}/per-class`, canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "precision", data: data.precision, backgroundColor: "#4878a8" },
        { label: "recall", data: data.recall, backgroundColor: "#d8782e" },
        { label: "F1", data: data.f1, backgroundColor: "#5a9a5a" },
      ],
    },
    options: { animation: false, maintainAspectRatio: false, scales: { y: { min: 0, max: 1 } } },
  });
}

function confusionTable(matrix) {
  const table = element("table", { class: "confusion", "data-figure": "confusion" });
  const head = table.createTHead().insertRow();
  head.append(element("th", {}, "true \\ predicted"));
  matrix.forEach((_, k) => head.append(element("th", {}, String(k))));
  const body = table.createTBody();
  matrix.forEach((row, k) => {
    const total = row.reduce((a, b) => a + b, 0);
    const line = body.insertRow();
    line.append(element("th", {}, String(k)));
    row.forEach((count, j) => {
      const share = total > 0 ? count / total : 0;
      const cell = element("td", { "data-share": String(share), title: `${count} of ${total}` },
        String(count));
      cell.style.backgroundColor = `rgba(72, 120, 168, ${share.toFixed(3)})`;
      cell.style.color = share > 0.5 ? "#fff" : "#1d232a";
      line.append(cell);
    });
  });
  return table;
}

function confusedPairs(matrix) {
  const pairs = [];
  matrix.forEach((row, k) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, j) => { if (j !== k && count > 0) pairs.push([count, k, j, count / total]); });
  });
  pairs.sort((a, b) => b[0] - a[0]);
  const table = element("table", { class: "pairs", "data-figure": "confused-pairs" });
  const head = table.createTHead().insertRow();
  for (const title of ["true", "predicted", "samples", "share of the true class"]) {
    head.append(element("th", {}, title));
  }
  const body = table.createTBody();
  for (const [count, k, j, share] of pairs.slice(0, TOP_PAIRS)) {
    const line = body.insertRow();
    for (const text of [k, j, count, shown(share)]) line.append(element("td", {}, String(text)));
  }
  return table;
}

function drawConfusion(section, statistics) {
  const holder = section.querySelector(".confusion-holder");
  const matrix = statistics.confusion_matrix;
  const small = matrix.length <= MAX_MATRIX;
  holder.replaceChildren(
    element("h3", {}, small ? "Confusion matrix over the window (colour: share of the row)"
      : `Most confused pairs over the window (top ${TOP_PAIRS}; the matrix has ${matrix.length} classes)`),
    small ? confusionTable(matrix) : confusedPairs(matrix));
}

function sourceSection(name) {
  const id = `source-${name}`;
  let section = document.getElementById(id);
  if (!section) {
    section = element("section", { id, "data-source": name });
    section.append(element("h2"), element("div", { class: "metrics-holder" }),
      element("div", { class: "figures" }), element("div", { class: "confusion-holder" }));
    document.getElementById("sources").append(section);
  }
  return section;
}

function render(summary) {
  const names = Object.keys(summary.sources).sort();
  for (const section of document.querySelectorAll("section[data-source]")) {
    if (!names.includes(section.dataset.source)) {
      for (const key of [...charts.keys()].filter((k) => k.startsWith(`${section.dataset.source}/`))) {
        charts.get(key).destroy();
        charts.delete(key);
      }
      section.remove();
    }
  }
  for (const name of names) {
    const source = summary.sources[name];
    const section = sourceSection(name);
    const width = source.task === "multilabel" ? `${source.num_labels} labels` : `${source.num_classes} classes`;
    section.querySelector("h2").textContent = `${name}: ${source.task}, ${width}`;
    section.querySelector(".metrics-holder").replaceChildren(metricsTable(source));
    const recent = source.window;
    if (recent.statistics) {
      drawReliability(name, section, source, recent.statistics);
      drawClasses(name, section, source, recent.metrics);
      if (source.task === "multiclass") drawConfusion(section, recent.statistics);
    }
  }
  document.getElementById("no-sources").hidden = names.length > 0;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("summary", { cache: "no-store", credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(`/summary answered ${response.status}: ${body.error || ""}`);
    render(body);
    status.className = "";
    status.textContent = `model ${body.model_id.slice(0, 12)}, updated ${new Date().toLocaleTimeString()}`
      + ` (every ${REFRESH_MS / 1000} s)`;
    status.dataset.updated = String(Date.now());
  } catch (error) {
    status.className = "error";
    status.textContent = `could not read /summary: ${error.message}`;
  }
}

document.getElementById("no-charts").hidden = typeof Chart !== "undefined";
refresh();
setInterval(refresh, REFRESH_MS);
