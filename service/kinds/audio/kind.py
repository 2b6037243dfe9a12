"""Audio: WAV as multipart files, raw audio/wav bodies, base64 in JSON, V2 BYTES of encoded WAV files.

Decoding, resampling, the clip rule and the log-mel features are service/kinds/audio/preprocess.py's (training
uses the same code). The graph takes the features, (N, frames, bands) FP32, so V2 clients may also send
features they computed themselves, as a plain FP32 tensor; or a ``waveform`` FP32 tensor [N, samples] of
16 kHz mono samples in [-1, 1], which goes through the same clip rule and features as a WAV file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from service.config import Settings
from service.errors import BadRequest, InvalidInput, LoadError, ServiceError
from service.kinds import register
from service.kinds.audio.explain import spectrogram_rows
from service.kinds.audio.preprocess import AUDIO_TYPES, AudioSpec, features, waveform_features
from service.kinds.base import InputKind, Prepared, check_count, decode_base64, single_input
from service.runtime import Feeds, OnnxModel

if TYPE_CHECKING:
    from service.repository.model_files import ModelMeta

WAVEFORM = "waveform"  # the V2 input name of raw samples (the graph's own input is the features)


@register
class AudioKind(InputKind):
    name = "audio"
    noun = "audio clip"
    media_types = AUDIO_TYPES
    file_suffixes = frozenset({".wav", ".wave"})
    json_fields: ClassVar[dict[str, bool]] = {"audio": False, "audios": True}
    accepts = 'multipart .wav files, an audio/wav body, JSON {"audio"|"audios": base64 WAV}'

    def __init__(self, spec: AudioSpec, input_name: str) -> None:
        self.spec = spec
        self.input_name = input_name

    @classmethod
    def sniff(cls, data: bytes) -> bool:
        return data[:4] == b"RIFF" and data[8:12] == b"WAVE"

    @classmethod
    def from_body(cls, data: bytes, media_type: str) -> list[Any]:
        if not data:
            raise BadRequest("the request body is empty")
        return [data]

    @classmethod
    def from_json(cls, key: str, value: Any) -> list[Any]:
        return [decode_base64(item, i, "audio") for i, item in enumerate(super().from_json(key, value))]

    @classmethod
    def load(cls, meta: ModelMeta, model_dir: Path, model: OnnxModel) -> Self:
        try:
            spec = AudioSpec.from_preprocessing(meta.section("audio"))
        except TypeError as e:
            raise LoadError(f"model.json's preprocessing.audio is not an audio spec: {e}") from None
        graph_input = single_input(model, "audio")
        expected = (-1, spec.frames, spec.n_mels)
        if graph_input.datatype != "FP32" or graph_input.shape != expected:
            raise LoadError(
                f"audio model input must be FP32 {list(expected)}, graph has {graph_input.datatype} "
                f"{list(graph_input.shape)}"
            )
        return cls(spec, graph_input.name)

    async def prepare(self, items: Sequence[Any], settings: Settings, pool: Executor) -> Prepared:
        """Decode, resample, fit and featurise in the thread pool: {input: FP32 (N, frames, bands)}."""
        check_count(len(items), "audio clips", settings)
        spec = self.spec

        def featurise_all() -> np.ndarray:
            out = np.empty((len(items), spec.frames, spec.n_mels), dtype=np.float32)
            for i, item in enumerate(items):
                try:
                    if isinstance(item, np.ndarray):  # V2 waveform rows, at the model's sample rate
                        out[i] = waveform_features(item, spec.sample_rate, spec)
                    else:
                        out[i] = features(item, spec)
                except ServiceError as e:
                    if len(items) == 1:
                        raise
                    raise type(e)(f"audio clip {i}: {e.message}") from None  # name the culprit among many
            return out

        feats = await asyncio.get_running_loop().run_in_executor(pool, featurise_all)
        return Prepared({self.input_name: feats}, len(items))

    def explain(self, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
        """The log-mel features the model heard, as spectrogram images."""
        return spectrogram_rows(feeds[self.input_name])

    def check_feeds(self, feeds: Feeds) -> None:
        """V2 feature tensors: finite (the binary extension carries NaN and infinity, and a log-mel
        spectrogram holding them answers noise, not a word)."""
        if not np.isfinite(feeds[self.input_name]).all():
            raise InvalidInput(f"input {self.input_name!r} holds NaN or infinite values")

    def from_v2_bytes(self, name: str, values: list[bytes], binary: bool) -> list[Any] | None:
        """Encoded WAV files: as they are in binary data, base64 strings in JSON."""
        if binary:
            return list(values)
        try:
            return [base64.b64decode(v, validate=True) for v in values]
        except (binascii.Error, ValueError):
            raise BadRequest(f"input {name!r}: BYTES audio in JSON must be base64 WAV files") from None

    def from_v2_tensor(self, name: str, datatype: str, value: np.ndarray) -> list[Any] | None:
        """A ``waveform`` input: FP32 (or FP64) samples at the model's rate, [samples] or [N, samples]."""
        if name != WAVEFORM:
            return None
        if datatype not in ("FP32", "FP64") or value.ndim not in (1, 2):
            raise InvalidInput(
                f"input {name!r}: send FP32 [N, samples] of {self.spec.sample_rate} Hz mono audio in [-1, 1]"
            )
        rows = value.reshape(1, -1) if value.ndim == 1 else value
        return [row.astype(np.float32) for row in rows]

    def describe(self) -> dict[str, Any]:
        s = self.spec
        return {
            "audio": {
                "sample_rate": s.sample_rate,
                "clip_seconds": [s.min_seconds, s.max_seconds],
                "window_seconds": s.clip_seconds,
                "features": [s.frames, s.n_mels],
                "v2_inputs": {"BYTES": "WAV files", WAVEFORM: f"FP32 [N, samples] at {s.sample_rate} Hz"},
            }
        }
