// Audio in the page: recorded or uploaded sound -> mono samples at the model's rate -> 16-bit PCM WAV.

// An AudioBuffer (any rate, any channels) as mono Float32 samples at `rate`, resampled by the browser.
export async function toMono(buffer, rate) {
  const length = Math.max(1, Math.round(buffer.duration * rate));
  const offline = new OfflineAudioContext(1, length, rate);
  const source = offline.createBufferSource();
  source.buffer = buffer;  // several channels are mixed down to the one output channel
  source.connect(offline.destination);
  source.start();
  return (await offline.startRendering()).getChannelData(0);
}

// Float32 samples in [-1, 1] as a 16-bit little-endian mono PCM WAV file.
export function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);  // PCM
  view.setUint16(22, 1, true); view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view], { type: "audio/wav" });
}

// Min/max per pixel column: a waveform that shows every peak, whatever the length.
export function drawWaveform(canvas, samples) {
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  const style = getComputedStyle(canvas);
  g.clearRect(0, 0, width, height);
  g.fillStyle = style.color;
  const per = samples.length / width, mid = height / 2;
  for (let x = 0; x < width; x++) {
    let lo = 1, hi = -1;
    const end = Math.min(samples.length, Math.floor((x + 1) * per));
    for (let i = Math.floor(x * per); i < end; i++) { lo = Math.min(lo, samples[i]); hi = Math.max(hi, samples[i]); }
    if (hi < lo) continue;
    g.fillRect(x, mid - hi * mid, 1, Math.max(1, (hi - lo) * mid));
  }
}

// Record the microphone through WebAudio (an AudioWorklet takes the raw samples: no lossy codec in
// between). Resolves to {stop}: stop() ends it and resolves to an AudioBuffer at the device's rate.
export async function startRecording() {
  if (!navigator.mediaDevices?.getUserMedia || !window.AudioWorkletNode) {
    throw new Error("this browser offers no microphone here (it needs https or localhost)");
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext();
  try {
    await context.audioWorklet.addModule("/playground/recorder-worklet.js");
  } catch (e) {
    stream.getTracks().forEach((t) => t.stop());
    context.close();
    throw e;
  }
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "modelserve-recorder");
  const blocks = [];
  node.port.onmessage = (e) => blocks.push(e.data);
  source.connect(node);
  node.connect(context.destination);  // pulled by the graph; it outputs silence
  return {
    async stop() {
      source.disconnect();
      node.disconnect();
      stream.getTracks().forEach((t) => t.stop());
      const rate = context.sampleRate;
      await context.close();
      const length = blocks.reduce((n, b) => n + b.length, 0);
      const buffer = new AudioBuffer({ length: Math.max(1, length), numberOfChannels: 1, sampleRate: rate });
      let at = 0;
      for (const b of blocks) { buffer.copyToChannel(b, 0, at); at += b.length; }
      return buffer;
    },
  };
}
