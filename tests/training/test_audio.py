"""Speech: the features training and serving share, the generated set's voice split, and the audio recipe
trained end to end on the committed held-out clips (a smoke run: the shipped model is checked elsewhere)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from service import kinds
from service.config import Settings
from service.kinds.audio.preprocess import AudioSpec, decode_wav, fit_clip, mel_filterbank, resample
from tests.conftest import require_programs
from training.export import export
from training.kinds.audio.commands import LABELS, SPLITS, plan
from training.kinds.audio.data import featurise
from training.kinds.audio.recipe import train_audio_model
from training.train import TrainConfig

HELD_OUT = Path(__file__).parents[1] / "data" / "commands"
SPEC = AudioSpec()


def torch_log_mel(window: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """An independent reference: torch.stft for the frames and FFT, the same mel filters and dB rule."""
    # torch centres the window inside each n_fft frame: pad so its frames sit where ours do.
    offset = (spec.n_fft - spec.frame_samples) // 2
    x = torch.from_numpy(np.pad(window.astype(np.float64) - window.mean(), (offset, offset)))
    stft = torch.stft(
        x,
        n_fft=spec.n_fft,
        hop_length=spec.hop_samples,
        win_length=spec.frame_samples,
        window=torch.from_numpy(np.hanning(spec.frame_samples + 2)[1:-1]),
        center=False,
        return_complex=True,
    )  # (F, T)
    power = (stft.abs() ** 2).T.numpy()[: spec.frames]
    db = 10 * np.log10(np.maximum(power @ mel_filterbank(spec), 1e-10))
    return np.maximum(db - db.max(), -spec.top_db)


def test_training_and_serving_compute_the_same_features_and_they_are_right() -> None:
    clip = sorted((HELD_OUT / "yes").glob("*.wav"))[0]
    # Training: the features the dataset loader computes for the file.
    trained_on = featurise([clip], SPEC)[0]
    # Serving: the audio kind preparing the same bytes, as /predict does.
    # Through the registry: importing the module directly would register it out of the built-in order.
    kind = kinds.get_kind("audio")(SPEC, "features")  # type: ignore[call-arg]
    with ThreadPoolExecutor(1) as pool:
        served = asyncio.run(kind.prepare([clip.read_bytes()], Settings(), pool)).feeds["features"][0]
    assert np.array_equal(trained_on, served)
    # And both are the log-mel spectrum an independent STFT gives.
    x, rate = decode_wav(clip.read_bytes())
    reference = torch_log_mel(fit_clip(resample(x, rate, SPEC.sample_rate), SPEC), SPEC)
    assert np.abs(reference - served).max() < 1e-3


def test_generated_set_holds_out_whole_voices() -> None:
    require_programs("espeak-ng")  # plan() lists espeak-ng's voice variants
    tasks = plan(seed=0, small=False)
    voices = {
        s: {t.voice.slug for t in tasks if t.voice.split == s and t.voice.engine != "noise"} for s in SPLITS
    }
    assert not voices["train"] & voices["validation"] and not voices["train"] & voices["test"]
    assert not voices["validation"] & voices["test"]
    variants = {s: {v.split("+")[-1] for v in voices[s] if v.startswith("espeak")} for s in SPLITS}
    assert not variants["train"] & (variants["validation"] | variants["test"])  # a variant in one split only
    assert {"flite_rms"} <= voices["test"] and {"flite_kal"} <= voices["validation"]
    assert {t.label for t in tasks} == set(LABELS)
    counts = {label: sum(t.label == label and t.voice.split == "train" for t in tasks) for label in LABELS}
    assert min(counts.values()) >= 500  # every class well represented


def test_audio_model_trains_exports_and_matches_torch(tmp_path: Path, words_split: Path) -> None:
    checkpoint = train_audio_model(
        str(words_split), "commands", tmp_path / "runs", TrainConfig(epochs=2, batch_size=16, progress=False)
    )
    report = json.loads((checkpoint.parent / "report.json").read_text())
    assert len(report["test"]["confusion_matrix"]) == len(LABELS)
    assert set(report["test"]["per_class_recall"]) == set(LABELS)
    target = export(checkpoint, tmp_path / "models", "commands")
    meta = json.loads((target / "model.json").read_text())
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 98, 40]}]
    assert meta["preprocessing"]["audio"]["n_mels"] == 40
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4  # batch 1 and 7, checked by export
    sess = ort.InferenceSession(str(target / "model.onnx"))
    feats = np.random.default_rng(0).uniform(-80, 0, (9, 98, 40)).astype(np.float32)
    batched = sess.run(["probabilities"], {"features": feats})[0]
    alone = np.concatenate([sess.run(["probabilities"], {"features": feats[i : i + 1]})[0] for i in range(9)])
    assert np.abs(batched - alone).max() <= 1e-5  # a row's answer does not depend on its batch
