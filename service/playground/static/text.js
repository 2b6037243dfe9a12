// Text models: a text area answered as you type (debounced), or at once with Ctrl+Enter.
import { pyString, shellQuote } from "./api.js";
import { registerKind } from "./kinds.js";
import { debounce, h } from "./ui.js";

const WAIT_MS = 300;  // after the last keystroke: a request per pause, not per key

function mount(box, model, ctx) {
  const area = h("textarea", { id: "text-input", rows: 5, spellcheck: "true",
    placeholder: "Type here, e.g. I loved this film", "aria-describedby": "text-hint" });
  const send = () => {
    const text = area.value;
    if (!text.trim()) return;
    const json = JSON.stringify({ text });
    ctx.predict({
      body: json,
      headers: { "Content-Type": "application/json" },
      curl: ["-H", shellQuote("Content-Type: application/json"), "-d", shellQuote(json)],
      python: `ms.predict_text(${pyString(model.name)}, ${pyString(text)}, top_k=${Math.min(5, model.labels.length)})`,
    });
  };
  const later = debounce(send, WAIT_MS);
  area.addEventListener("input", later);
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); later.cancel(); send(); }
  });
  box.append(
    h("label", { for: "text-input", text: `Text for ${model.name}` }),
    area,
    h("p", { id: "text-hint", class: "muted", text: "The answer follows as you type (Ctrl+Enter: at once)." }),
  );
  return () => later.cancel();
}

// The words the model read; those outside its vocabulary are marked (they all read as one "unknown").
function renderSeen(input) {
  if (!Array.isArray(input.tokens)) return null;
  const known = (i) => (Array.isArray(input.known) ? input.known[i] : input.ids[i] !== input.unknown_id);
  const unknown = input.tokens.filter((_, i) => !known(i)).length;
  return h("div", {},
    h("p", { class: "muted", text: `What the model read: ${input.tokens.length} tokens` +
      (unknown ? `, ${unknown} outside its vocabulary (struck through)` : "") }),
    h("p", { class: "tokens" }, ...input.tokens.map((word, i) =>
      h(known(i) ? "span" : "s", { class: "token", text: word }))));
}

registerKind("text", { mount, renderSeen });
// Transformer text models (subword tokens from their tokenizer.json) take the same texts.
registerKind("subword", { mount, renderSeen });
