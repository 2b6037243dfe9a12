// Tabular models: a form generated from the model's feature list (/models "features": name, type
// numeric|categorical, min/max seen in training, integer, mean, categories, required, default), sent as
// {"row": {...}}; answered on every change (debounced) and on submit. Values outside the training range
// are answered and flagged by the server; the page shows its notes.
import { pyString, shellQuote } from "./api.js";
import { registerKind } from "./kinds.js";
import { debounce, h } from "./ui.js";

const categorical = (f) => f.type === "categorical";
const hasRange = (f) => typeof f.min === "number" && typeof f.max === "number";
const fmt = (x) => (Number.isInteger(x) ? String(x) : String(+x.toPrecision(4)));

function startValue(f) {
  if (f.default !== undefined && f.default !== null) return f.default;
  if (categorical(f)) return f.categories[0];
  const x = typeof f.mean === "number" ? f.mean : hasRange(f) ? (f.min + f.max) / 2 : 0;
  return f.integer ? Math.round(x) : +x.toPrecision(4);
}

function field(f, i) {
  const id = `feature-${i}`;
  const hint = [
    hasRange(f) ? `trained on ${fmt(f.min)} to ${fmt(f.max)}` : "",
    f.required === false ? "optional" : "",
  ].filter(Boolean).join(", ");
  const start = startValue(f);
  const control = categorical(f)
    ? h("select", { id, name: f.name, "aria-describedby": hint ? `${id}-hint` : null },
      ...(f.required === false ? [h("option", { value: "", text: "(not given)" })] : []),
      ...f.categories.map((c) => h("option", { value: c, text: c, selected: String(c) === String(start) })))
    : h("input", { id, name: f.name, type: "number", inputmode: "decimal", step: f.integer ? "1" : "any",
      required: f.required !== false, value: start, "aria-describedby": hint ? `${id}-hint` : null });
  return h("div", { class: "feature" }, h("label", { for: id, text: f.name }), control,
    hint ? h("span", { class: "muted", id: `${id}-hint`, text: hint }) : null);
}

// A Python literal for the row (JSON's true/false/null are not Python; these values are str or number).
const pyRow = (row) => "{" + Object.entries(row).map(([k, v]) => `${pyString(k)}: ${typeof v === "number" ? v : pyString(v)}`).join(", ") + "}";

function mount(box, model, ctx) {
  const features = model.features || [];
  if (!features.length) {
    box.append(h("p", { text: `${model.name} lists no features in /models, so the page cannot build its form.` }));
    return null;
  }
  const form = h("form", { class: "features", id: "tabular-form", novalidate: true },
    ...features.map(field), h("button", { type: "submit", text: "Classify" }));
  const row = () => {
    const out = {};
    features.forEach((f, i) => {
      const value = form.querySelector(`#feature-${i}`).value;
      if (value === "" && f.required === false) return;  // left out: the server fills the default
      out[f.name] = categorical(f) || value === "" ? value : Number(value);
    });
    return out;
  };
  const send = () => {
    const values = row();
    const json = JSON.stringify({ row: values });
    ctx.predict({
      body: json,
      headers: { "Content-Type": "application/json" },
      curl: ["-H", shellQuote("Content-Type: application/json"), "-d", shellQuote(json)],
      python: `ms.predict_rows(${pyString(model.name)}, [${pyRow(values)}], top_k=${Math.min(5, model.labels.length)})[0]`,
    });
  };
  const later = debounce(send, 300);
  form.addEventListener("input", later);
  form.addEventListener("change", later);  // a select may report only change; the debounce makes it one request
  form.addEventListener("submit", (e) => { e.preventDefault(); later.cancel(); send(); });
  box.append(h("p", { class: "muted", text: `One row of ${features.length} features; the answer follows every change.` }), form);
  send();  // the starting row (training means and first categories) answers at once
  return () => later.cancel();
}

// The row as the model took it (defaults filled), and the server's notes on it.
function renderSeen(input, prediction) {
  const notes = [
    ...(prediction.out_of_range || []).map((n) =>
      `${n.feature} = ${fmt(n.value)} is outside the training range ${fmt(n.min)} to ${fmt(n.max)}: the answer is an extrapolation.`),
    ...(prediction.fallbacks || []).map((n) => `${n.feature}: unknown category "${n.value}" read as "${n.read_as}".`),
  ];
  return h("div", {},
    notes.length ? h("ul", { class: "notes", id: "tabular-notes" }, ...notes.map((t) => h("li", { text: t }))) : null,
    h("p", { class: "muted", id: "seen-row-title", text: "What the model took" }),
    h("table", { class: "seen-row", "aria-labelledby": "seen-row-title" },
      h("tbody", {}, ...Object.entries(input).map(([k, v]) =>
        h("tr", {}, h("th", { scope: "row", text: k }), h("td", { text: typeof v === "number" ? fmt(v) : v }))))));
}

registerKind("tabular", { mount, renderSeen });
