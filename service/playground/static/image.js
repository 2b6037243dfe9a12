// Image models: draw on a canvas (mouse, pen or finger: pointer events), or upload / drop a file.
// The page sends the drawing or the file as it is; the server does the model's own preprocessing and,
// with ?explain=1, sends back the small image the model saw, shown beside the answer.
import { pyString, shellQuote } from "./api.js";
import { registerKind } from "./kinds.js";
import { h } from "./ui.js";

const SIZE = 280;            // canvas pixels: 10x a 28x28 input, so strokes downsample smoothly
const STROKE = SIZE / 14;    // ~2 px at 28x28: the stroke width of an MNIST digit
const INK = "#fff", PAPER = "#000";  // white on black, as MNIST digits are

function mount(box, model, ctx) {
  const canvas = h("canvas", {
    width: SIZE, height: SIZE, class: "draw", role: "img",
    "aria-label": "Drawing area: draw with the mouse, a pen or a finger; the answer comes when you lift it",
  });
  const g = canvas.getContext("2d");
  const clear = () => { g.fillStyle = PAPER; g.fillRect(0, 0, SIZE, SIZE); drawn = false; };
  let drawn = false, last = null, pointer = null;
  clear();

  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (SIZE / r.width), (e.clientY - r.top) * (SIZE / r.height)];
  };
  const dot = ([x, y], width) => { g.beginPath(); g.arc(x, y, width / 2, 0, 2 * Math.PI); g.fill(); };
  const width = (e) => (e.pointerType === "pen" && e.pressure > 0 ? STROKE * (0.6 + 0.8 * e.pressure) : STROKE);
  const line = (from, to, w) => {
    g.lineWidth = w; g.lineCap = g.lineJoin = "round"; g.strokeStyle = g.fillStyle = INK;
    g.beginPath(); g.moveTo(...from); g.lineTo(...to); g.stroke();
  };
  canvas.addEventListener("pointerdown", (e) => {
    if (pointer !== null || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    pointer = e.pointerId;
    canvas.setPointerCapture(e.pointerId);
    last = at(e);
    g.fillStyle = INK;
    dot(last, width(e));
    drawn = true;
  });
  canvas.addEventListener("pointermove", (e) => {
    if (e.pointerId !== pointer) return;
    // Coalesced events: every sample the device sent, not one per frame, so fast strokes stay smooth.
    const events = e.getCoalescedEvents?.() ?? [];
    for (const ev of events.length ? events : [e]) {
      const p = at(ev);
      line(last, p, width(ev));
      last = p;
    }
  });
  const end = (e) => {
    if (e.pointerId !== pointer) return;
    pointer = null;
    send();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  let fileUrl = null;
  const send = () => {
    if (!drawn) return;
    canvas.toBlob((blob) => {
      const form = new FormData();
      form.append("file", blob, "drawing.png");
      const url = URL.createObjectURL(blob);
      ctx.predict({
        body: form,
        curl: ["-F", "file=@drawing.png"],
        python: `ms.predict_image(${pyString(model.name)}, "drawing.png", top_k=5)`,
        file: () => ["To run these, save ", h("a", { href: url, download: "drawing.png", text: "your drawing as drawing.png" }), "."],
      });
    }, "image/png");
  };

  const preview = h("img", { class: "preview", alt: "", hidden: true });
  const upload = (file) => {
    if (!file) return;
    if (fileUrl) URL.revokeObjectURL(fileUrl);
    fileUrl = URL.createObjectURL(file);
    preview.src = fileUrl;
    preview.alt = `The uploaded file ${file.name}`;
    preview.hidden = false;
    const form = new FormData();
    form.append("file", file, file.name);
    const name = file.name || "image";
    ctx.predict({
      body: form,
      curl: ["-F", shellQuote(`file=@${name}`)],
      python: `ms.predict_image(${pyString(model.name)}, ${pyString(name)}, top_k=5)`,
    });
  };

  const input = h("input", { type: "file", id: "image-file", accept: "image/*", class: "visually-hidden",
    onchange: () => { upload(input.files[0]); } });
  const zone = h("div", { class: "drop", id: "image-drop" },
    h("label", { for: "image-file", class: "button", text: "Upload an image" }),
    input, h("span", { class: "muted", text: " or drop one here" }));
  // Drag and drop anywhere on the panel.
  for (const type of ["dragenter", "dragover"]) {
    box.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  box.addEventListener("dragleave", (e) => { if (!box.contains(e.relatedTarget)) zone.classList.remove("over"); });
  box.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    upload(e.dataTransfer.files[0]);
  });

  const [inH, inW] = imageSize(model);
  box.append(
    h("p", { class: "muted", text: `Draw ${model.labels.length === 10 && model.labels[0] === "0" ? "a digit" : "something"} in the square; ${model.name} sees it as ${inW}x${inH} pixels.` }),
    h("div", { class: "draw-row" }, canvas,
      h("div", { class: "draw-tools" },
        h("button", { type: "button", id: "clear", text: "Clear", onclick: clear }),
        preview)),
    zone,
  );
  return () => { if (fileUrl) URL.revokeObjectURL(fileUrl); };
}

function imageSize(model) {
  const shape = model.inputs?.[0]?.shape || [];
  return shape.length === 4 ? [shape[1], shape[2]] : ["?", "?"];
}

function renderSeen(input) {
  if (!input.image) return null;
  const [height, width] = input.shape;
  return h("figure", {},
    h("img", { src: input.image, class: "pixelated", id: "seen-image", width: 112, height: 112,
      alt: `The ${width}x${height} image the model saw` }),
    h("figcaption", { text: `What the model saw: ${width}x${height}` }));
}

registerKind("image", { mount, renderSeen });
