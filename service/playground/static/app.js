// The playground: list the models (GET /models), ask for a key when the server wants one, mount the
// chosen model's input kind, send its requests to /models/{name}/predict and show the answers.
import { auth, call } from "./api.js";
import { getKind } from "./kinds.js";
import { $, clearAnswer, copyText, h, showAnswer, showPending } from "./ui.js";
import "./image.js";
import "./text.js";
import "./audio.js";
import "./tabular.js";

const TOP_K = 5;
let models = [];
let current = null;       // the chosen model (an entry of /models)
let unmount = null;       // the mounted kind's cleanup
let sequence = 0;         // answers to older requests than the latest are dropped (typing is fast)

async function loadModels() {
  $("models-status").textContent = "Loading the models…";
  const result = await call("/models");
  if (result.status === 401) {
    askForKey(result.error);
    $("models-status").textContent = "The models are listed once the server accepts your key.";
    return;
  }
  if (!result.ok) {
    $("models-status").textContent = `GET /models failed (HTTP ${result.status}): ${result.error}`;
    return;
  }
  $("key-error").textContent = "";
  $("key-panel").hidden = !auth.key;  // keep the panel (to change or forget the key) once one is in use
  models = result.data.models;
  renderModels(result.data.failed || {});
}

function askForKey(message) {
  $("key-panel").hidden = false;
  $("key-error").textContent = auth.key ? message : `${message} Enter a key to use the models.`;
  $("api-key").focus();
}

function accuracyText(model) {
  if (typeof model.accuracy !== "number") return "no test report";
  const n = model.test_size ? ` of ${model.test_size}` : "";
  return `${(model.accuracy * 100).toFixed(1)}% test accuracy${n}`;
}

function labelsText(labels) {
  const shown = labels.slice(0, 12).join(", ");
  return labels.length > 12 ? `${shown}, … (${labels.length} labels)` : shown;
}

function renderModels(failed) {
  const list = $("model-list");
  list.querySelectorAll(".model").forEach((el) => el.remove());
  if (!models.length) {
    $("models-status").textContent = "This server serves no models.";
  } else {
    $("models-status").textContent = `${models.length} model${models.length > 1 ? "s" : ""} served. Choose one:`;
  }
  for (const model of models) {
    const id = `model-${model.name}`;
    const input = h("input", { type: "radio", name: "model", id, value: model.name,
      "aria-describedby": `${id}-about`, onchange: () => choose(model.name) });
    list.append(h("div", { class: "model" }, input,
      h("label", { for: id },
        h("span", { class: "model-name", text: model.name }),
        h("span", { class: "badge", text: `v${model.latest}` }),
        h("span", { class: `badge kind-${model.input_kind}`, text: model.input_kind }),
        h("span", { class: "model-about", id: `${id}-about` },
          h("span", { text: accuracyText(model) }),
          model.data ? h("span", { class: "muted", text: ` · ${model.data}` }) : null,
          h("span", { class: "labels", text: labelsText(model.labels || []) })))));
  }
  list.hidden = !models.length;
  const failures = Object.entries(failed);
  $("models-failed").hidden = !failures.length;
  $("models-failed").textContent = failures.length
    ? "Failed to load: " + failures.map(([name, why]) => `${name}: ${typeof why === "string" ? why : JSON.stringify(why)}`).join("; ")
    : "";
  const wanted = decodeURIComponent(location.hash.slice(1));
  const pick = models.find((m) => m.name === wanted) || models.find((m) => m.name === current?.name) || models[0];
  if (pick) choose(pick.name);
}

function choose(name) {
  const model = models.find((m) => m.name === name);
  if (!model) return;
  $(`model-${name}`).checked = true;
  if (current?.name === name && unmount !== null) return;
  if (unmount) unmount();
  unmount = null;
  current = model;
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  sequence++;
  clearAnswer();
  $("try-title").textContent = `Try ${model.name}`;
  // A fresh element per mount: listeners a kind puts on it go away with it.
  const box = h("div", { class: `kind kind-${model.input_kind}` });
  $("kind-ui").replaceChildren(box);
  const kind = getKind(model.input_kind);
  if (!kind) {
    box.append(h("p", {},
      `${model.name} takes ${model.input_kind} inputs, which this page cannot build. Send tensors to `,
      h("code", { text: `POST /v2/models/${model.name}/infer` }), " (see ", h("a", { href: "/docs", text: "the API docs" }), ")."));
    return;
  }
  unmount = kind.mount(box, model, { predict: (req) => predict(model, kind, req) }) || (() => {});
}

async function predict(model, kind, req) {
  const mine = ++sequence;
  req.path = `/models/${encodeURIComponent(model.name)}/predict?top_k=${Math.min(TOP_K, Math.max(1, (model.labels || []).length))}&explain=1`;
  showPending(`Asking ${model.name}…`);
  const result = await call(req.path, { method: "POST", body: req.body, headers: req.headers || {} });
  if (mine !== sequence) return null;  // a newer request (or another model) took over
  showAnswer(result, req, kind);
  if (result.status === 401) askForKey(result.error);
  return result;
}

function wire() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    auth.key = $("api-key").value.trim();
    $("api-key").value = "";
    loadModels();
  });
  $("key-forget").addEventListener("click", () => {
    auth.key = "";
    $("api-key").value = "";
    loadModels();
  });
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => copyText($(button.dataset.copy).textContent, button));
  }
  addEventListener("hashchange", () => choose(decodeURIComponent(location.hash.slice(1))));
}

wire();
loadModels();
