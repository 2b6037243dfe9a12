// Tabular models: a form generated from the model's feature list (/models "features"), with ranges;
// answered on every change (debounced) and on submit.
import { pyString, shellQuote } from "./api.js";
import { registerKind } from "./kinds.js";
import { debounce, h } from "./ui.js";

const isCategorical = (f) => Array.isArray(f.categories || f.values);
const choices = (f) => f.categories || f.values;

function field(f, i) {
  const id = `feature-${i}`;
  const range = !isCategorical(f) && typeof f.min === "number" && typeof f.max === "number"
    ? `${f.min} to ${f.max}` : "";
  const hint = h("span", { class: "muted", id: `${id}-hint`, text: range ? `range ${range}` : (f.description || "") });
  let control;
  if (isCategorical(f)) {
    control = h("select", { id, name: f.name, "aria-describedby": `${id}-hint` },
      ...choices(f).map((c) => h("option", { value: c, text: c, selected: String(c) === String(f.default) })));
  } else {
    const start = f.default ?? f.mean ?? f.median ?? (typeof f.min === "number" && typeof f.max === "number" ? (f.min + f.max) / 2 : 0);
    control = h("input", { id, name: f.name, type: "number", step: "any", required: true,
      min: f.min, max: f.max, value: +Number(start).toFixed(4), "aria-describedby": `${id}-hint` });
  }
  return h("div", { class: "feature" }, h("label", { for: id, text: f.name }), control, hint);
}

function mount(box, model, ctx) {
  const features = model.features || [];
  if (!features.length) {
    box.append(h("p", { text: `${model.name} lists no features in /models, so the page cannot build its form.` }));
    return null;
  }
  const form = h("form", { class: "features", id: "tabular-form" }, ...features.map(field),
    h("button", { type: "submit", text: "Classify" }));
  const row = () => Object.fromEntries(features.map((f, i) => {
    const el = form.elements[`feature-${i}`] || form.querySelector(`#feature-${i}`);
    return [f.name, isCategorical(f) ? el.value : Number(el.value)];
  }));
  const send = () => {
    if (!form.checkValidity()) { form.reportValidity(); return; }
    const json = JSON.stringify({ row: row() });
    ctx.predict({
      body: json,
      headers: { "Content-Type": "application/json" },
      curl: ["-H", shellQuote("Content-Type: application/json"), "-d", shellQuote(json)],
      python: null,
      httpxArgs: `json=${json}`,
    });
  };
  const later = debounce(send, 300);
  form.addEventListener("input", later);
  form.addEventListener("submit", (e) => { e.preventDefault(); later.cancel(); send(); });
  box.append(h("p", { class: "muted", text: `One row of ${features.length} features; the answer follows every change.` }), form);
  return () => later.cancel();
}

// Notes the server adds per row (e.g. values outside the training range), when there are any.
function renderSeen(input) {
  return input && typeof input === "object" ? h("pre", { text: JSON.stringify(input, null, 2) }) : null;
}

registerKind("tabular", { mount, renderSeen });
