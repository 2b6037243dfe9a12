"""Log-mel augmentation while training, numpy only: fresh variation every epoch, none of it in the data.

The generated clips (training/data/augment.py) vary rate, pitch, room, channel and noise once, when they
are written. These act on the cached features of a batch, differently each epoch, so the network cannot
memorise a clip, and they reach what the two engines lack: other vocal tracts (``warp_bands``, VTLP),
other tempi (``stretch_time``), other spectral envelopes (``tilt``), narrowband channels
(``band_limit``), and SpecAugment's masks. Inputs and outputs are (N, T, M) dB relative to each clip's
loudest bin, floored at -top_db, as service/kinds/audio/preprocess.py computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.kinds.audio.preprocess import AudioSpec


@dataclass(frozen=True)
class FeatureAugment:
    """Each transform's probability and range; ``off()`` gives the old single-mask SpecAugment."""

    warp: float = 0.8  # probability of a VTLP warp
    warp_range: tuple[float, float] = (0.82, 1.2)  # formants scaled by this factor
    stretch: float = 0.6  # probability of a tempo change (and shift)
    stretch_range: tuple[float, float] = (0.8, 1.25)
    shift_frames: int = 12
    tilt: float = 0.6  # probability of a smooth random EQ across the bands
    tilt_db: float = 10.0
    band_limit: float = 0.2  # probability of a phone-line-like low/high cut
    time_masks: int = 2
    time_mask_frames: int = 12
    band_masks: int = 2
    band_mask_bands: int = 6

    @classmethod
    def off(cls) -> FeatureAugment:
        """Only one time mask and one band mask: what training did before."""
        return cls(0, (1, 1), 0, (1, 1), 0, 0, 0, 0, 1, 12, 1, 5)


def band_centres(spec: AudioSpec) -> np.ndarray:
    """The Hz centre of each mel band (HTK), as service/kinds/audio/preprocess.py's filterbank places them."""
    mel_lo, mel_hi = (2595.0 * np.log10(1.0 + f / 700.0) for f in (spec.f_min, spec.f_max))
    mels = np.linspace(mel_lo, mel_hi, spec.n_mels + 2)[1:-1]
    return np.asarray(700.0 * (10.0 ** (mels / 2595.0) - 1.0))


def _gather(x: np.ndarray, src: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``x`` at fractional indices ``src`` (N, L) along ``axis`` (1 or 2)."""
    n = x.shape[axis]
    src = np.clip(src, 0, n - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo).astype(np.float32)
    shape = (len(x), -1, 1) if axis == 1 else (len(x), 1, -1)
    lo, hi, w = lo.reshape(shape), hi.reshape(shape), w.reshape(shape)
    return np.take_along_axis(x, lo, axis) * (1 - w) + np.take_along_axis(x, hi, axis) * w


def warp_bands(x: np.ndarray, alpha: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """VTLP: each clip's spectrum with frequencies scaled by its ``alpha`` (> 1: a shorter vocal tract).

    Band i takes the value the clip had at centre_i / alpha, read between the bands it falls on."""
    centres = band_centres(spec)
    source_hz = centres[None, :] / alpha[:, None]  # (N, M)
    src = np.stack([np.interp(s, centres, np.arange(len(centres))) for s in source_hz])
    return _gather(x, src, 2)


def stretch_time(x: np.ndarray, rate: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Each clip played ``rate`` times faster about its centre and moved by ``shift`` frames (edges held)."""
    t = x.shape[1]
    centre = (t - 1) / 2
    frames = np.arange(t)[None, :]
    src = centre + (frames - centre - shift[:, None]) * rate[:, None]
    return _gather(x, src, 1)


def renormalise(x: np.ndarray, top_db: float) -> np.ndarray:
    """dB relative to each clip's loudest bin again, floored, as the service computes it."""
    peak = x.max(axis=(1, 2), keepdims=True)
    return np.maximum(x - peak, -top_db)


def tilt(x: np.ndarray, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """A smooth random gain across the bands (4 knots, +-max_db): another microphone or vocal timbre."""
    n, _, m = x.shape
    knots = rng.uniform(-max_db, max_db, size=(n, 4))
    where = np.linspace(0, m - 1, 4)
    gain = np.stack([np.interp(np.arange(m), where, k) for k in knots]).astype(np.float32)
    return x + gain[:, None, :]


def band_limit(x: np.ndarray, rng: np.random.Generator, spec: AudioSpec) -> np.ndarray:
    """Bands below 200-400 Hz and above 3.2-5.5 kHz at the floor: a phone line or a small loudspeaker."""
    centres = band_centres(spec)
    low = rng.uniform(200, 400, size=len(x))
    high = rng.uniform(3200, 5500, size=len(x))
    cut = (centres[None, :] < low[:, None]) | (centres[None, :] > high[:, None])  # (N, M)
    return np.where(cut[:, None, :], np.float32(-spec.top_db), x)


def _masks(
    x: np.ndarray, rng: np.random.Generator, count: int, width: int, axis: int, fill: np.ndarray
) -> np.ndarray:
    n, size = len(x), x.shape[axis]
    for _ in range(count):
        w = rng.integers(0, width + 1, size=n)
        start = rng.integers(0, size, size=n)
        pos = np.arange(size)[None, :]
        mask = (pos >= start[:, None]) & (pos < (start + w)[:, None])  # (N, size)
        mask3 = mask[:, :, None] if axis == 1 else mask[:, None, :]
        x = np.where(mask3, fill[None, None, :], x)
    return x


def augment_features(
    x: np.ndarray, rng: np.random.Generator, spec: AudioSpec, fill: np.ndarray, aug: FeatureAugment
) -> np.ndarray:
    """A batch (N, T, M) through the transforms, each applied to a random part of the batch."""
    x = x.astype(np.float32, copy=True)
    n = len(x)

    def chosen(p: float) -> np.ndarray:  # p == 0 draws nothing: `off()` repeats the old draws exactly
        return np.flatnonzero(rng.random(n) < p) if p > 0 else np.zeros(0, dtype=np.int64)

    if len(idx := chosen(aug.warp)):
        x[idx] = warp_bands(x[idx], rng.uniform(*aug.warp_range, size=len(idx)), spec)
    if len(idx := chosen(aug.stretch)):
        slow, fast = aug.stretch_range
        rate = np.exp(rng.uniform(np.log(slow), np.log(fast), size=len(idx)))  # as often slower as faster
        shift = rng.integers(-aug.shift_frames, aug.shift_frames + 1, size=len(idx))
        x[idx] = stretch_time(x[idx], rate, shift)
    if len(idx := chosen(aug.tilt)):
        x[idx] = tilt(x[idx], rng, aug.tilt_db)
    if len(idx := chosen(aug.band_limit)):
        x[idx] = band_limit(x[idx], rng, spec)
    x = renormalise(x, spec.top_db)
    x = _masks(x, rng, aug.time_masks, aug.time_mask_frames, 1, fill)
    return _masks(x, rng, aug.band_masks, aug.band_mask_bands, 2, fill)
