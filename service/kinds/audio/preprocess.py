"""Audio decoding and log-mel features, numpy only: any common WAV in, (frames, mel bands) float32 out.

The one copy of the speech features: training imports ``features`` too, so a model hears at serving
exactly what it heard in training. The steps:

1. ``decode_wav``: RIFF/WAVE, PCM 8/16/24/32-bit integer or 32/64-bit float (plain or
   WAVE_FORMAT_EXTENSIBLE), any channel count (mixed to mono), any sample rate from 8 to 192 kHz.
2. ``resample`` to 16 kHz (windowed sinc, anti-aliased when downsampling).
3. ``fit_clip``: clips of 0.2-2 s are accepted, anything else is a 422. A shorter clip is centred in a
   1 s window of zeros; a longer one is cut to its loudest 1 s (the word, wherever it sits).
4. ``log_mel``: 25 ms Hann frames every 10 ms, 512-point FFT, 40 mel bands (20 Hz-7.6 kHz, HTK), power
   in dB relative to the clip's loudest bin, floored 80 dB below it. Relative dB makes the features
   independent of the recording level; the model standardises each band with its training statistics.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from service.errors import BadRequest, InvalidInput, UnsupportedMediaType

AUDIO_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/*"})
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
MIN_RATE, MAX_RATE, MAX_CHANNELS = 8000, 192000, 16


@dataclass(frozen=True)
class AudioSpec:
    """What a speech model hears: the clip rule and the log-mel feature parameters."""

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    min_seconds: float = 0.2
    max_seconds: float = 2.0
    frame_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 7600.0
    top_db: float = 80.0

    @property
    def window_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def frame_samples(self) -> int:
        return round(self.sample_rate * self.frame_ms / 1000)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def frames(self) -> int:
        """Feature frames per clip (98 for 1 s at 25/10 ms)."""
        return 1 + (self.window_samples - self.frame_samples) // self.hop_samples

    def to_preprocessing(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_preprocessing(cls, pre: dict[str, Any]) -> AudioSpec:
        """The spec model.json's ``preprocessing.audio`` describes (unknown keys are refused)."""
        return cls(**pre)


def decode_wav(data: bytes, spec: AudioSpec | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], sample rate) of a WAV file; 4xx on anything else.

    With ``spec``, the duration is checked from the header, before any sample is converted."""
    if not data:
        raise BadRequest("the audio is empty (0 bytes)")
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise UnsupportedMediaType("not a WAV file (RIFF/WAVE); send PCM or float WAV audio")
    if data[:4] == b"RIFX":
        raise UnsupportedMediaType("big-endian WAV (RIFX) is not supported; send little-endian WAV")
    fmt: tuple[int, int, int, int, int] | None = None
    pos, body = 12, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        start = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or start + 16 > len(data):
                raise BadRequest("corrupt WAV: the fmt chunk is truncated")
            tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", data[start : start + 16])
            if tag == _EXTENSIBLE and size >= 40 and start + 26 <= len(data):
                tag = struct.unpack("<H", data[start + 24 : start + 26])[0]  # the sub-format GUID
            fmt = (tag, channels, rate, align, bits)
        elif chunk_id == b"data":
            # Streamed WAVs (espeak --stdout, some recorders) leave the size unset: take what is there.
            body = data[start : min(start + size, len(data))]
            break
        pos = start + size + (size & 1)  # chunks are word-aligned
    if fmt is None or body is None:
        raise BadRequest("corrupt WAV: no fmt or data chunk")
    tag, channels, rate, _, bits = fmt
    if not 1 <= channels <= MAX_CHANNELS or bits not in (8, 16, 24, 32, 64):
        raise BadRequest(f"corrupt WAV: {channels} channels of {bits} bits")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidInput(f"sample rate {rate} Hz is not supported ({MIN_RATE}-{MAX_RATE} Hz)")
    if spec is not None:
        check_duration(len(body) // (channels * bits // 8), rate, spec)
    return _samples(body, tag, channels, bits), rate


def _samples(body: bytes, tag: int, channels: int, bits: int) -> np.ndarray:
    width = bits // 8
    if tag == _PCM and bits in (8, 16, 24, 32):
        n = len(body) // (width * channels)
        raw = np.frombuffer(body, dtype=np.uint8, count=n * width * channels)
        if bits == 8:  # 8-bit WAV is unsigned
            x = (raw.astype(np.float32) - 128.0) / 128.0
        elif bits == 24:
            b = raw.reshape(-1, 3).astype(np.int32)
            x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 2.0**23
        else:
            x = raw.view(f"<i{width}").astype(np.float32) / float(2 ** (bits - 1))
    elif tag == _FLOAT and bits in (32, 64):
        n = len(body) // (width * channels)
        x = np.frombuffer(body, dtype=f"<f{width}", count=n * channels).astype(np.float32)
        if not np.isfinite(x).all():
            raise InvalidInput("the WAV holds NaN or infinite samples")
    else:
        raise UnsupportedMediaType(
            f"WAV encoding (format {tag}, {bits} bits) is not supported: send PCM 8/16/24/32-bit or float"
        )
    return x.reshape(-1, channels).mean(axis=1, dtype=np.float32)


@lru_cache(maxsize=32)
def _phase_kernels(sr_in: int, sr_out: int, half_taps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Windowed-sinc taps for each output phase: (offsets, (period, taps) kernels, period).

    Output sample n sits at input position n * sr_in / sr_out, whose fractional part repeats every
    ``period`` = sr_out / gcd outputs (160 for 44.1 -> 16 kHz), so the taps are computed once per pair."""
    cutoff = min(1.0, sr_out / sr_in) * 0.95  # a little below Nyquist: the sinc's transition band
    width = int(np.ceil(half_taps / cutoff))
    period = sr_out // np.gcd(sr_in, sr_out)
    offsets = np.arange(-width + 1, width + 1)
    t = np.arange(period) * sr_in / sr_out
    d = (t - np.floor(t))[:, None] - offsets[None, :]
    window = 0.5 + 0.5 * np.cos(np.pi * np.clip(d / width, -1, 1))
    return offsets, (cutoff * np.sinc(cutoff * d) * window).astype(np.float32), int(period)


def resample(x: np.ndarray, sr_in: int, sr_out: int, half_taps: int = 16) -> np.ndarray:
    """Windowed-sinc resampling of a 1-D signal; low-passes below the new Nyquist when downsampling."""
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32, copy=False)
    offsets, kernels, period = _phase_kernels(sr_in, sr_out, half_taps)
    n_out = round(len(x) * sr_out / sr_in)
    pad = len(offsets)
    padded = np.concatenate([np.zeros(pad, np.float32), x.astype(np.float32), np.zeros(pad, np.float32)])
    out = np.empty(n_out, dtype=np.float32)
    for lo in range(0, n_out, 8192):  # chunks bound the (outputs x taps) temporaries
        n = np.arange(lo, min(lo + 8192, n_out))
        base = (n * sr_in) // sr_out  # exact integer floor of the input position
        out[lo : lo + len(n)] = np.einsum(
            "ij,ij->i", padded[base[:, None] + offsets + pad], kernels[n % period]
        )
    return out


def check_duration(n_samples: int, sample_rate: int, spec: AudioSpec) -> None:
    seconds = n_samples / sample_rate
    if not spec.min_seconds <= seconds <= spec.max_seconds:
        raise InvalidInput(
            f"the clip lasts {seconds:.3f} s; this model takes clips of "
            f"{spec.min_seconds:g}-{spec.max_seconds:g} s (one word, centred in a {spec.clip_seconds:g} s window)"
        )


def fit_clip(x: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """A 16 kHz clip of 0.2-2 s to exactly one window: centred in zeros, or its loudest window."""
    check_duration(len(x), spec.sample_rate, spec)
    n = spec.window_samples
    if len(x) <= n:
        left = (n - len(x)) // 2
        return np.pad(x, (left, n - len(x) - left)).astype(np.float32)
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(0, len(x) - n + 1, spec.hop_samples)
    start = int(starts[np.argmax(energy[starts + n] - energy[starts])])
    return x[start : start + n].astype(np.float32)


@lru_cache(maxsize=8)
def mel_filterbank(spec: AudioSpec) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular HTK-mel filters."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(spec.f_min), mel(spec.f_max), spec.n_mels + 2))
    bins = np.linspace(0, spec.sample_rate / 2, spec.n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None, :] - lower) / (centre - lower)
    down = (upper - bins[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down)).T


def log_mel(window: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """(frames, n_mels) float32 dB relative to the clip's loudest bin, floored at -top_db."""
    x = window.astype(np.float64) - float(np.mean(window))  # DC offsets from cheap microphones
    frames = np.lib.stride_tricks.sliding_window_view(x, spec.frame_samples)[:: spec.hop_samples]
    frames = frames[: spec.frames] * np.hanning(spec.frame_samples + 2)[1:-1]
    power = np.abs(np.fft.rfft(frames, n=spec.n_fft, axis=1)) ** 2  # (T, F)
    db = 10.0 * np.log10(np.maximum(power @ mel_filterbank(spec), 1e-10))  # (T, M)
    return np.maximum(db - db.max(), -spec.top_db).astype(np.float32)


def waveform_features(x: np.ndarray, sample_rate: int, spec: AudioSpec) -> np.ndarray:
    """Mono samples at any rate -> (frames, n_mels): resample, fit to the window, log-mel."""
    check_duration(len(x), sample_rate, spec)
    if not np.isfinite(x).all():
        raise InvalidInput("the waveform holds NaN or infinite samples")
    return log_mel(fit_clip(resample(x, sample_rate, spec.sample_rate), spec), spec)


def features(data: bytes, spec: AudioSpec) -> np.ndarray:
    """An encoded WAV file -> (frames, n_mels) float32; the duration is checked before any work."""
    x, rate = decode_wav(data, spec)
    return waveform_features(x, rate, spec)
