// Audio models: record from the microphone (WebAudio: raw samples from an AudioWorklet, resampled to the
// model's rate and encoded to a 16-bit mono WAV in the page) or upload a WAV; a waveform preview; the WAV
// goes to /predict as a file.
import { pyString, shellQuote } from "./api.js";
import { registerKind } from "./kinds.js";
import { h } from "./ui.js";
import { drawWaveform, encodeWav, startRecording, toMono } from "./wav.js";

// What /models says about the model's audio: {"audio": {"sample_rate", "clip_seconds": [min, max], ...}}.
function audioInfo(model) {
  const a = model.audio || {};
  const clip = Array.isArray(a.clip_seconds) ? a.clip_seconds : [0, a.clip_seconds || a.window_seconds || 1];
  return { rate: a.sample_rate || 16000, seconds: clip[1] || a.window_seconds || 1 };
}

function mount(box, model, ctx) {
  const { rate, seconds } = audioInfo(model);
  const limit = Math.min(30, Math.max(1, seconds));  // the longest clip the model takes
  const status = h("p", { role: "status", class: "muted", id: "audio-status",
    text: `Press Record and speak (up to ${limit} s); ${model.name} hears ${rate} Hz mono.` });
  const wave = h("canvas", { width: 560, height: 96, class: "wave", role: "img", "aria-label": "Waveform: no sound yet" });
  const player = h("audio", { controls: true, hidden: true, "aria-label": "Play the sound sent" });
  let timer = null, url = null;

  const show = (samples, blob) => {
    drawWaveform(wave, samples);
    wave.setAttribute("aria-label", `Waveform of ${(samples.length / rate).toFixed(2)} s of sound`);
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(blob);
    player.src = url;
    player.hidden = false;
  };
  const send = (blob, name) => {
    const form = new FormData();
    form.append("file", blob, name);
    const download = url;
    ctx.predict({
      body: form,
      curl: ["-F", shellQuote(`file=@${name}`)],
      python: `ms.predict_audio(${pyString(model.name)}, ${pyString(name)}, top_k=${Math.min(5, model.labels.length)})`,
      file: name === "recording.wav"
        ? () => ["To run these, save ", h("a", { href: download, download: name, text: "your recording as recording.wav" }), "."] : null,
    });
  };

  let recording = null;
  const stop = async () => {
    clearTimeout(timer);
    if (!recording) return;
    const current = recording;
    recording = null;
    button.textContent = "Record";
    try {
      // The timer fires a little late: keep within the longest clip the model takes.
      const samples = (await toMono(await current.stop(), rate)).subarray(0, Math.floor(limit * rate));
      const wav = encodeWav(samples, rate);
      show(samples, wav);
      status.textContent = `Recorded ${(samples.length / rate).toFixed(2)} s.`;
      send(wav, "recording.wav");
    } catch (e) {
      status.textContent = `Could not read the recording: ${e.message}`;
    }
  };
  let starting = false;
  const record = async () => {
    if (recording) { stop(); return; }
    if (starting) return;  // still waiting for the microphone (a permission prompt)
    starting = true;
    try {
      recording = await startRecording();
    } catch (e) {
      status.textContent = `No microphone: ${e.message}. Upload a WAV file instead.`;
      return;
    } finally {
      starting = false;
    }
    button.textContent = "Stop";
    status.textContent = `Recording… speak now (it stops by itself after ${limit} s).`;
    timer = setTimeout(stop, limit * 1000);
  };
  const button = h("button", { type: "button", id: "record", text: "Record", onclick: record });

  const upload = async (file) => {
    if (!file) return;
    try {
      const bytes = await file.arrayBuffer();
      const context = new AudioContext();
      const buffer = await context.decodeAudioData(bytes.slice(0));  // (decoding detaches its input)
      context.close();
      show(await toMono(buffer, rate), file);
      // The file's own rate from its header (the decoded buffer is at the sound card's rate).
      const head = new DataView(bytes);
      const own = bytes.byteLength >= 28 && head.getUint32(0) === 0x52494646 ? head.getUint32(24, true) : null;
      status.textContent = `${file.name}: ${buffer.duration.toFixed(2)} s` + (own ? ` at ${own} Hz.` : ".");
    } catch {
      status.textContent = `${file.name}: the browser cannot play it; sent as it is.`;  // the server decides
    }
    send(file, file.name || "audio.wav");
  };
  const input = h("input", { type: "file", id: "audio-file", accept: ".wav,audio/wav,audio/x-wav", class: "visually-hidden",
    onchange: () => upload(input.files[0]) });
  box.addEventListener("dragover", (e) => e.preventDefault());
  box.addEventListener("drop", (e) => { e.preventDefault(); upload(e.dataTransfer.files[0]); });

  box.append(status,
    h("div", { class: "row" }, button,
      h("label", { for: "audio-file", class: "button", text: "Upload a WAV" }), input),
    wave, player);
  // Another model chosen: drop a running recording unsent (its answer would land on the other model).
  return () => {
    clearTimeout(timer);
    if (recording) recording.stop();
    recording = null;
    if (url) URL.revokeObjectURL(url);
  };
}

// The features the model heard (/predict?explain=1): a spectrogram, time left to right.
function renderSeen(input) {
  if (!input.spectrogram) return null;
  const [frames, bands] = input.shape;
  return h("figure", {},
    h("img", { src: input.spectrogram, class: "pixelated spectrogram", id: "seen-image", width: Math.min(560, frames * 4), height: bands * 2,
      alt: `The ${frames} frames x ${bands} bands of features the model heard` }),
    h("figcaption", { text: `What the model heard: ${frames} frames x ${bands} log-mel bands` }));
}

registerKind("audio", { mount, renderSeen });
