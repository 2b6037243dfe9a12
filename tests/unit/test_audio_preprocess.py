"""service/kinds/audio/preprocess.py: WAV decoding in every encoding, resampling, the clip rule, and bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from service.errors import BadRequest, InvalidInput, UnsupportedMediaType
from service.kinds.audio.preprocess import AudioSpec, decode_wav, features, fit_clip, log_mel, resample

SPEC = AudioSpec()


def chirp(rate: int, seconds: float = 0.8) -> np.ndarray:
    """A rising tone with an envelope: speech-like enough for the features to have structure."""
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * (300 * t + 900 * t**2)) * np.hanning(len(t))).astype(np.float64)


def wav(
    x: np.ndarray, rate: int, bits: int = 16, channels: int = 1, fmt: str = "pcm", extensible: bool = False
) -> bytes:
    """A WAV file of ``x`` (duplicated across channels) in the given encoding."""
    x = np.repeat(x[:, None], channels, axis=1).reshape(-1)
    if fmt == "float":
        body = x.astype("<f4" if bits == 32 else "<f8").tobytes()
        tag = 3
    elif bits == 8:
        body = np.clip(np.round(x * 127 + 128), 0, 255).astype(np.uint8).tobytes()
        tag = 1
    elif bits == 24:
        ints = np.clip(np.round(x * (2**23 - 1)), -(2**23), 2**23 - 1).astype("<i4")
        body = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        tag = 1
    else:
        ints = np.clip(np.round(x * (2 ** (bits - 1) - 1)), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        body = ints.astype(f"<i{bits // 8}").tobytes()
        tag = 1
    align = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_chunk = (
            struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits, 22, bits, 0) + guid
        )
    else:
        fmt_chunk = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    chunks += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk before the data
    chunks += b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


REFERENCE = features(wav(chirp(16000), 16000), SPEC)


@pytest.mark.parametrize(
    ("rate", "bits", "channels", "fmt", "extensible", "tolerance_db"),
    [
        (16000, 16, 1, "pcm", False, 0.0),
        (16000, 8, 1, "pcm", False, 6.0),  # 8-bit quantisation noise
        (16000, 24, 2, "pcm", False, 0.5),
        (16000, 32, 1, "pcm", True, 0.5),
        (16000, 32, 2, "float", False, 0.5),
        (16000, 64, 1, "float", True, 0.5),
        (48000, 16, 1, "pcm", False, 2.0),
        (44100, 16, 2, "pcm", False, 2.0),
        (22050, 16, 1, "pcm", False, 2.0),
        (8000, 16, 1, "pcm", False, 40.0),  # nothing above 4 kHz survives 8 kHz: compare the low bands only
    ],
)
def test_every_encoding_gives_the_same_features(
    rate: int, bits: int, channels: int, fmt: str, extensible: bool, tolerance_db: float
) -> None:
    got = features(wav(chirp(rate), rate, bits, channels, fmt, extensible), SPEC)
    assert got.shape == (98, 40) and got.dtype == np.float32
    loud = REFERENCE > -40  # where the chirp is; quiet bins are noise-floor detail
    diff = np.abs(got - REFERENCE)[loud]
    if rate == 8000:
        diff = np.abs(got - REFERENCE)[:, :25][loud[:, :25]]
        tolerance_db = 3.0
    assert np.median(diff) <= max(tolerance_db, 1e-6)


def test_resampling_keeps_a_tone_and_removes_what_cannot_be_kept() -> None:
    for rate in (8000, 11025, 22050, 44100, 48000, 96000):
        t = np.arange(rate) / rate
        out = resample(np.sin(2 * np.pi * 1000 * t), rate, 16000)
        ref = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
        assert len(out) == 16000
        assert np.abs(out[200:-200] - ref[200:-200]).max() < 1e-3
    t = np.arange(44100) / 44100
    aliased = resample(np.sin(2 * np.pi * 12000 * t), 44100, 16000)  # above 8 kHz: must vanish
    assert np.abs(aliased[200:-200]).max() < 1e-3


def test_clip_rule_pads_short_clips_and_keeps_the_loudest_second() -> None:
    short = np.ones(8000, dtype=np.float32)
    fitted = fit_clip(short, SPEC)
    assert len(fitted) == 16000 and fitted[:4000].sum() == 0 and fitted[4000:12000].all()
    long = np.zeros(30000, dtype=np.float32)
    long[20000:24000] = 1.0  # the word sits late in a 1.9 s recording
    window = fit_clip(long, SPEC)
    assert len(window) == 16000 and window.sum() == 4000
    for seconds in (0.1, 2.5):
        with pytest.raises(InvalidInput, match=r"0\.2-2 s"):
            fit_clip(np.zeros(int(16000 * seconds), dtype=np.float32), SPEC)


def test_features_do_not_depend_on_the_level() -> None:
    x = chirp(16000)
    quiet, loud = (features(wav(x * g, 16000, 32, fmt="float"), SPEC) for g in (0.01, 1.0))
    assert np.abs(quiet - loud).max() < 1e-3
    assert log_mel(np.zeros(16000, dtype=np.float32), SPEC).max() == 0.0  # digital silence: flat, finite


def test_bad_audio_is_a_clear_4xx() -> None:
    good = wav(chirp(16000), 16000)
    with pytest.raises(BadRequest, match="empty"):
        decode_wav(b"")
    with pytest.raises(UnsupportedMediaType, match="not a WAV"):
        decode_wav(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(UnsupportedMediaType, match="not a WAV"):
        decode_wav(b"hello, this is text and not audio at all")
    with pytest.raises(BadRequest, match="corrupt"):
        decode_wav(good[:30])  # the header cut inside the fmt chunk
    with pytest.raises(BadRequest, match="corrupt"):
        decode_wav(good[:12] + b"junk" + good[16:])  # no fmt chunk
    with pytest.raises(InvalidInput, match=r"0\.000 s"):
        features(good[:56], SPEC)  # a header and no samples
    with pytest.raises(InvalidInput, match=r"600\.000 s"):
        features(wav(np.zeros(16000 * 600), 16000), SPEC)  # refused on its header, before decoding
    nan = chirp(16000)
    nan[100] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        features(wav(nan, 16000, 32, fmt="float"), SPEC)
    with pytest.raises(InvalidInput, match="sample rate"):
        features(wav(chirp(4000), 4000), SPEC)
    with pytest.raises(UnsupportedMediaType, match="not supported"):
        features(good[:20] + struct.pack("<H", 2) + good[22:], SPEC)  # ADPCM
