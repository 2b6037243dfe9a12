// DOM helpers, and the answer panel: bars, latency, what the model saw, the request to reproduce it.
import { curlCommand, pythonCall } from "./api.js";

// h("p", {class: "x", onclick: f}, "text", child): an element; attributes set as properties where they exist.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

export function debounce(fn, ms) {
  let timer;
  const wrapped = (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

const percent = (score) => `${(score * 100).toFixed(score >= 0.995 || score < 0.0005 ? 1 : 2)}%`;

export function showPending(text) {
  $("answer-status").textContent = text;
  $("answer").setAttribute("aria-busy", "true");
}

export function clearAnswer(text = "No request yet.") {
  $("answer").removeAttribute("aria-busy");
  $("answer-status").textContent = text;
  for (const id of ["answer-error", "bars", "seen", "repro"]) $(id).hidden = true;
  $("quick").textContent = "";
}

// result: what api.call returned; req: the request (for the snippets); kind: renders explain fields.
export function showAnswer(result, req, kind) {
  const answer = $("answer");
  answer.removeAttribute("aria-busy");
  answer.dataset.count = Number(answer.dataset.count || 0) + 1;  // lets a script wait for the next answer
  const ms = `${Math.round(result.ms)} ms`;
  const bars = $("bars"), seen = $("seen"), error = $("answer-error");
  showRepro(req);
  if (!result.ok) {
    $("answer-status").textContent = result.status
      ? `HTTP ${result.status} after ${ms}` : `No answer after ${ms}`;
    error.textContent = result.error;
    error.hidden = false;
    $("quick").textContent = `HTTP ${result.status}: ${result.error}`;
    bars.hidden = seen.hidden = true;
    return;
  }
  error.hidden = true;
  const p = result.data.predictions[0];
  $("answer-status").replaceChildren(
    h("strong", { class: "top-label", "data-label": p.label, text: p.label }),
    ` ${percent(p.score)} · ${ms} round trip · ${result.data.model} v${result.data.version}`,
  );
  bars.replaceChildren(...p.top_k.map((t) => {
    const fill = h("span", { class: "fill" });
    fill.style.width = `${Math.max(0.5, t.score * 100)}%`;  // CSSOM: allowed by the page's CSP
    return h("li", { class: "bar", "data-label": t.label },
      h("span", { class: "bar-label", text: t.label }),
      h("span", { class: "track", "aria-hidden": "true" }, fill),
      h("span", { class: "bar-score", text: percent(t.score) }));
  }));
  bars.hidden = false;
  // The same answer under the inputs, for a phone, where the answer panel is below the fold.
  $("quick").textContent = `${result.data.model}: ${p.label} (${percent(p.score)}) · see the answer below`;
  const explained = p.input && kind.renderSeen ? kind.renderSeen(p.input, p) : null;
  seen.replaceChildren(...(explained ? [explained] : []));
  seen.hidden = !explained;
}

function showRepro(req) {
  $("curl").textContent = curlCommand(req);
  $("python").textContent = pythonCall(req);
  const note = $("repro-file");
  note.replaceChildren(...(req.file ? req.file() : []));
  note.hidden = !req.file;
  $("repro").hidden = false;
}

export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API outside secure contexts (plain http on another host): select it for Ctrl+C.
    const pre = button.closest(".snippet").querySelector("pre");
    const range = document.createRange();
    range.selectNodeContents(pre);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    button.textContent = "Press Ctrl+C";
    return;
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}
