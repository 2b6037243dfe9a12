// AudioWorklet processor: hands every block of microphone samples (channels averaged) to the page.
class Recorder extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;  // keep running until the page disconnects it
  }
}
registerProcessor("modelserve-recorder", Recorder);
