"""What the speech recipe does for voices it never heard: the feature-space augmentation (VTLP, tempo, EQ,
band-limit, masks), the held-out-engine proxy splits, and the GRU / per-clip-normalised network exporting
with the graph answering as torch does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.kinds.audio.preprocess import AudioSpec
from training.export import export
from training.kinds.audio.data import AudioData, AudioSplits
from training.kinds.audio.feature_augment import (
    FeatureAugment,
    augment_features,
    band_centres,
    stretch_time,
    warp_bands,
)
from training.kinds.audio.proxy import engine_of, held_out_engine_splits, subsample
from training.kinds.audio.recipe import train_audio_model
from training.nets import lifter_matrix
from training.train import TrainConfig

SPEC = AudioSpec()


def one_band(band: int, n: int = 1) -> np.ndarray:
    x = np.full((n, SPEC.frames, SPEC.n_mels), -80.0, dtype=np.float32)
    x[:, 30:60, band] = 0.0
    return x


def test_vtlp_moves_a_formant_by_the_warp_factor() -> None:
    centres = band_centres(SPEC)
    for alpha in (0.85, 1.2):
        warped = warp_bands(one_band(15), np.asarray([alpha]), SPEC)
        peak = int(warped[0, 45].argmax())
        assert peak == int(np.abs(centres - centres[15] * alpha).argmin()), alpha
    assert np.array_equal(warp_bands(one_band(15), np.asarray([1.0]), SPEC), one_band(15))


def test_tempo_change_shortens_or_lengthens_the_word_about_the_centre() -> None:
    x = one_band(10)
    assert np.array_equal(stretch_time(x, np.asarray([1.0]), np.asarray([0])), x)
    loud = lambda y: int((y[0, :, 10] > -40).sum())  # noqa: E731
    assert loud(stretch_time(x, np.asarray([1.5]), np.asarray([0]))) == pytest.approx(20, abs=2)
    assert loud(stretch_time(x, np.asarray([0.75]), np.asarray([0]))) == pytest.approx(40, abs=2)
    moved = stretch_time(x, np.asarray([1.0]), np.asarray([5]))
    assert np.array_equal(moved[0, 35:65, 10], x[0, 30:60, 10])


def test_augmented_features_keep_the_service_form() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-80, 0, (64, SPEC.frames, SPEC.n_mels)).astype(np.float32)
    x -= x.max(axis=(1, 2), keepdims=True)
    fill = x.mean(axis=(0, 1))
    out = augment_features(x, rng, SPEC, fill, FeatureAugment())
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= -SPEC.top_db and out.max() <= 0.0
    assert not np.array_equal(out, x)
    # Each batch draws afresh: the same clips differ between epochs.
    assert not np.array_equal(out, augment_features(x, rng, SPEC, fill, FeatureAugment()))


def fake_splits() -> AudioSplits:
    def part(split: str, names: list[str]) -> AudioData:
        files = [f"{split}/yes/{n}-yes-{i}-0.wav" for i, n in enumerate(names)]
        return AudioData(np.zeros((len(files), 2, 2), np.float32), np.zeros(len(files), np.int64), files)

    train = part(
        "train", ["espeak-ng_en_m1", "espeak-ng_en-us_f2", "flite_slt", "flite_awb", "noise_generated"]
    )
    validation = part("validation", ["espeak-ng_en_m3", "flite_kal", "noise_generated"])
    test = part("test", ["espeak-ng_en_m7", "flite_rms", "noise_generated"])
    return AudioSplits(train, validation, test, ["yes"], "data/commands")


def test_held_out_engine_splits_never_mix_engines_nor_touch_the_test_split() -> None:
    to_flite = held_out_engine_splits(fake_splits(), "flite")
    assert {engine_of(f) for f in to_flite.train.files} == {"espeak-ng", "noise"}
    assert {engine_of(f) for f in to_flite.validation.files} == {"flite", "noise"}
    assert len(to_flite.validation.files) == 4  # slt, awb (training voices of flite), kal, noise
    to_espeak = held_out_engine_splits(fake_splits(), "espeak-ng")
    assert {engine_of(f) for f in to_espeak.train.files} == {"flite", "noise"}
    assert {engine_of(f) for f in to_espeak.validation.files} == {"espeak-ng", "noise"}
    for proxy in (to_flite, to_espeak):
        assert not any(f.startswith("test/") for f in proxy.train.files + proxy.validation.files)
    with pytest.raises(ValueError):
        held_out_engine_splits(fake_splits(), "festival")


def test_subsample_keeps_every_class() -> None:
    data = AudioData(np.zeros((100, 1, 1)), np.repeat(np.arange(4), 25), [str(i) for i in range(100)])
    part = subsample(data, 0.2, seed=0)
    assert len(part.labels) == 20 and set(np.unique(part.labels)) == {0, 1, 2, 3}


def test_gru_with_per_clip_norm_trains_and_exports(tmp_path: Path, words_split: Path) -> None:
    checkpoint = train_audio_model(
        str(words_split),
        "commands",
        tmp_path / "runs",
        TrainConfig(epochs=1, batch_size=16, progress=False),
        rnn="gru",
        bidirectional=False,
        channels=(32, 48),
        hidden_dim=32,
        augment=FeatureAugment(),
        norm="clip",
    )
    report = json.loads((checkpoint.parent / "report.json").read_text())
    assert report["feature_augment"]["warp"] > 0
    target = export(checkpoint, tmp_path / "models", "commands")
    meta = json.loads((target / "model.json").read_text())
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4  # torch and onnxruntime, batch 1 and 7


def test_the_lifter_keeps_a_frames_envelope_and_drops_its_fine_structure() -> None:
    """Cepstral liftering across the bands: with every coefficient kept it is the identity; with few, a
    smooth envelope passes almost unchanged while a ripple from band to band (a pitch's harmonics) goes."""
    assert np.allclose(lifter_matrix(40, 40), np.eye(40), atol=1e-6)
    smooth = lifter_matrix(40, 12)
    bands = np.arange(40)
    envelope = -30.0 + 20.0 * np.cos(2 * np.pi * bands / 40)
    ripple = 6.0 * (-1.0) ** bands
    kept = (envelope + ripple).astype(np.float32) @ smooth
    assert np.sqrt(np.mean((kept - envelope) ** 2)) < 0.1 * np.sqrt(np.mean(ripple**2))  # 6 dB -> < 0.6


def test_the_2d_front_end_with_the_lifter_trains_and_exports(tmp_path: Path, words_split: Path) -> None:
    checkpoint = train_audio_model(
        str(words_split),
        "commands",
        tmp_path / "runs",
        TrainConfig(epochs=1, batch_size=16, progress=False),
        frontend="conv2d",
        channels=(8, 16),
        hidden_dim=32,
        lifter=12,
    )
    target = export(checkpoint, tmp_path / "models", "commands")
    meta = json.loads((target / "model.json").read_text())
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 98, 40]}]
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4  # torch and onnxruntime, batch 1 and 7
