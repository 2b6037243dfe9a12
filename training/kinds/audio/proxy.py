"""The proxy for voices never heard: hold out a whole speech engine.

The generated set holds out whole voices, but of the same two engines, and a model can learn an engine's
sound rather than the words (98% on held-out espeak-ng/flite voices, 84% on other engines). Holding out a
whole engine asks the question acceptance asks:

- ``hold_out_engine="flite"``: train on the espeak-ng training voices, validate on flite's voices outside
  the test split (kal16, slt, awb, kal);
- ``hold_out_engine="espeak-ng"``: train on flite's training voices, validate on the espeak-ng
  validation-split voices.

`_silence_` clips (generated noise) go with the training and validation splits they were made for. The
test split (flite `rms` and its espeak-ng variants) is never used, so the figure reported on it stays a
figure nothing was chosen on. Clips are told apart by their file names: <engine>_<voice>-<word>-...
"""

from __future__ import annotations

import numpy as np

from training.kinds.audio.data import AudioData, AudioSplits

ENGINES = ("espeak-ng", "flite")


def engine_of(file: str) -> str:
    """espeak-ng, flite or noise, from a generated clip's path (<split>/<label>/<engine>_<voice>-...)."""
    stem = file.replace("\\", "/").rsplit("/", 1)[-1]
    return stem.split("_", 1)[0]


def _where(data: AudioData, keep: np.ndarray) -> AudioData:
    idx = np.flatnonzero(keep)
    return AudioData(data.features[idx], data.labels[idx], [data.files[i] for i in idx])


def _concat(parts: list[AudioData]) -> AudioData:
    return AudioData(
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.labels for p in parts]),
        [f for p in parts for f in p.files],
    )


def held_out_engine_splits(splits: AudioSplits, hold_out_engine: str) -> AudioSplits:
    """Train on the other engine's training voices; validate (and 'test') on ``hold_out_engine``."""
    if hold_out_engine not in ENGINES:
        raise ValueError(f"hold_out_engine must be one of {ENGINES}, not {hold_out_engine!r}")
    trained = next(e for e in ENGINES if e != hold_out_engine)
    engines = {
        name: np.asarray([engine_of(f) for f in getattr(splits, name).files])
        for name in ("train", "validation")
    }
    if not (engines["train"] == trained).any() or not (engines["validation"] == "noise").any():
        raise ValueError(f"{splits.source}: not a generated set (no {trained} or noise clips by name)")
    train = _where(splits.train, np.isin(engines["train"], [trained, "noise"]))
    if hold_out_engine == "flite":  # flite has few voices: its training voices count as unheard too
        held = [_where(splits.train, engines["train"] == "flite")]
        held.append(_where(splits.validation, np.isin(engines["validation"], ["flite", "noise"])))
        validation = _concat(held)
    else:
        validation = _where(splits.validation, np.isin(engines["validation"], ["espeak-ng", "noise"]))
    return AudioSplits(
        train, validation, validation, splits.classes, f"{splits.source} (held out: {hold_out_engine})"
    )


def subsample(data: AudioData, fraction: float, seed: int) -> AudioData:
    """A seeded ``fraction`` of the clips, every class kept in proportion."""
    rng = np.random.default_rng([seed, 7])
    keep = np.zeros(len(data.labels), dtype=bool)
    for label in np.unique(data.labels):
        idx = np.flatnonzero(data.labels == label)
        keep[rng.choice(idx, size=max(1, round(len(idx) * fraction)), replace=False)] = True
    return _where(data, keep)
