"""Waveform augmentation for synthesised speech, numpy only: the listening conditions the engines lack.

Every function takes and returns mono float32 at 16 kHz and draws from the generator it is given, so a
seeded generator reproduces the same clip. ``augment`` chains them at random.
"""

from __future__ import annotations

import numpy as np

from service.kinds.audio.preprocess import resample

RATE = 16000


def trim(x: np.ndarray, threshold_db: float = -45.0) -> np.ndarray:
    """The clip without its leading and trailing near-silence (relative to its peak)."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak == 0.0:
        return x
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (threshold_db / 20))
    return x[max(0, loud[0] - 160) : loud[-1] + 160]


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Faster (factor > 1) or slower: tempo and pitch together, as a tape would."""
    return resample(x, 160 * round(RATE * factor / 160), RATE)  # 1% steps keep the resampler's table small


def time_stretch(x: np.ndarray, rate: float, frame: int = 512, hop: int = 128, tol: int = 128) -> np.ndarray:
    """WSOLA: tempo times ``rate`` with the pitch kept; each frame is placed where it best continues the last."""
    window = np.hanning(frame).astype(np.float32)
    n_out = int(len(x) / rate)
    padded = np.pad(x, (tol, frame + tol + int(hop * rate) + 1))
    out = np.zeros(n_out + frame, dtype=np.float32)
    norm = np.zeros(n_out + frame, dtype=np.float32)
    prev = 0
    for k, pos in enumerate(range(0, n_out, hop)):
        target = int(k * hop * rate) + tol
        if k:
            natural = padded[prev + hop : prev + hop + frame]
            cands = padded[target - tol : target + tol + frame]
            corr = np.correlate(cands, natural, mode="valid")
            target = target - tol + int(np.argmax(corr))
        out[pos : pos + frame] += padded[target : target + frame] * window
        norm[pos : pos + frame] += window
        prev = target
    return (out / np.maximum(norm, 1e-3))[:n_out]


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch moved by ``semitones`` at the same duration: resample, then stretch back."""
    factor = 2.0 ** (semitones / 12.0)
    return time_stretch(speed(x, factor), 1.0 / factor)


def colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f^exponent: 0 white, 1 pink, 2 brown."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / RATE)
    spectrum *= 1.0 / np.maximum(f, 20.0) ** (exponent / 2.0)
    y = np.fft.irfft(spectrum, n)
    return (y / (np.std(y) + 1e-12)).astype(np.float32)


def background(n: int, rng: np.random.Generator, babble: list[np.ndarray] | None = None) -> np.ndarray:
    """Unit-RMS background of a random kind: white/pink/brown noise, mains hum, fan, or babble."""
    y: np.ndarray
    kind = rng.choice(
        ["white", "pink", "brown", "hum", "fan", "babble"], p=[0.2, 0.25, 0.15, 0.1, 0.15, 0.15]
    )
    if kind == "babble" and babble:
        y = np.zeros(n, dtype=np.float32)
        for _ in range(int(rng.integers(2, 5))):
            voice = babble[int(rng.integers(len(babble)))][:n]
            start = int(rng.integers(0, max(1, n - len(voice))))
            y[start : start + len(voice)] += voice[: n - start] * rng.uniform(0.3, 1.0)
        y += 0.05 * colored_noise(n, rng, 1.0)
    elif kind == "hum":
        t = np.arange(n) / RATE
        base = rng.choice([50.0, 60.0])
        y = sum(
            rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6.3))
            for h in range(1, 6)
        )
        y = np.asarray(y, dtype=np.float32) + 0.1 * colored_noise(n, rng, 1.0)
    elif kind == "fan":
        y = band_limit(colored_noise(n, rng, 0.0), rng.uniform(80, 300), rng.uniform(800, 3000))
    else:
        y = colored_noise(n, rng, {"white": 0.0, "pink": 1.0, "brown": 2.0}.get(str(kind), 1.0))
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)


def band_limit(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Brick-ish band-pass with 100 Hz cosine edges (a telephone is 300-3400 Hz)."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / RATE)
    gain = np.clip((f - low + 100) / 200, 0, 1) * np.clip((high + 100 - f) / 200, 0, 1)
    return np.fft.irfft(spectrum * (0.5 - 0.5 * np.cos(np.pi * gain)), len(x)).astype(np.float32)


def random_eq(x: np.ndarray, rng: np.random.Generator, max_db: float = 8.0) -> np.ndarray:
    """A smooth random frequency response, as different microphones and loudspeakers have."""
    spectrum = np.fft.rfft(x)
    knots = rng.uniform(-max_db, max_db, size=8)
    where = np.linspace(0, 1, len(knots))
    gain_db = np.interp(np.linspace(0, 1, len(spectrum)) ** 0.5, where, knots)
    return np.fft.irfft(spectrum * 10 ** (gain_db / 20), len(x)).astype(np.float32)


def reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: exponentially decaying noise (RT60 0.1-0.7 s) after the direct sound."""
    rt60 = rng.uniform(0.1, 0.7)
    n = int(rt60 * RATE)
    t = np.arange(n) / RATE
    rir = rng.standard_normal(n) * 10 ** (-3 * t / rt60) * rng.uniform(0.1, 0.5)
    rir[0] = 1.0
    y = np.fft.irfft(np.fft.rfft(x, len(x) + n) * np.fft.rfft(rir, len(x) + n), len(x) + n)[: len(x) + n // 2]
    return (y / (np.abs(y).max() + 1e-12) * np.abs(x).max()).astype(np.float32)


def telephone(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8 kHz narrowband, 300-3400 Hz, sometimes mu-law companded: a phone line."""
    y = band_limit(resample(resample(x, RATE, 8000), 8000, RATE), 300, 3400)
    if rng.random() < 0.5:
        mu = 255.0
        peak = np.abs(y).max() + 1e-12
        c = np.sign(y) * np.log1p(mu * np.abs(y / peak)) / np.log1p(mu)
        c = np.round(c * 127) / 127
        y = np.sign(c) * ((1 + mu) ** np.abs(c) - 1) / mu * peak
    return y.astype(np.float32)


def place(word: np.ndarray, rng: np.random.Generator, min_s: float = 0.45, max_s: float = 1.6) -> np.ndarray:
    """The word at a random offset in a clip of random length (what a client's recording looks like)."""
    total = max(len(word), int(rng.uniform(min_s, max_s) * RATE))
    start = int(rng.integers(0, total - len(word) + 1))
    out = np.zeros(total, dtype=np.float32)
    out[start : start + len(word)] = word
    return out


def augment(word: np.ndarray, rng: np.random.Generator, babble: list[np.ndarray] | None = None) -> np.ndarray:
    """A trimmed word -> a clip: speed, pitch, placement, room, channel, noise, gain, int16 range."""
    x = word
    if rng.random() < 0.5:
        x = speed(x, rng.uniform(0.85, 1.15))
    if rng.random() < 0.3:
        x = pitch_shift(x, rng.uniform(-2.0, 2.0))
    x = place(x, rng)
    if rng.random() < 0.3:
        x = reverb(x, rng)
    if rng.random() < 0.15:
        x = telephone(x, rng)
    elif rng.random() < 0.5:
        x = random_eq(x, rng)
    peak_rms = float(np.sqrt(np.mean(x[np.abs(x) > 0.05 * np.abs(x).max()] ** 2))) if np.any(x) else 1.0
    if rng.random() < 0.85:
        snr_db = rng.uniform(3.0, 35.0)
        x = x + background(len(x), rng, babble) * peak_rms * 10 ** (-snr_db / 20)
    return scale(x, rng)


def scale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random level (peak 0.03-1.2, clipped at full scale: loud microphones clip)."""
    y = x / (np.abs(x).max() + 1e-12) * rng.uniform(0.03, 1.2)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def silence(rng: np.random.Generator) -> np.ndarray:
    """A `_silence_` clip: background without speech, at any level down to near-digital silence."""
    n = int(rng.uniform(0.5, 1.6) * RATE)
    x = background(n, rng)
    if rng.random() < 0.3:
        x = reverb(x, rng)
    return np.clip(x * 10 ** (rng.uniform(-70, -10) / 20), -1.0, 1.0).astype(np.float32)
