"""Image decoding and conversion; the tokenizer."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.kinds.image.preprocess import ImageSpec, decode, decode_to_array
from service.kinds.text.preprocess import Tokenizer, pad_batch, split_glove, split_words

GREY = ImageSpec(28, 28, 1)
RGB = ImageSpec(32, 32, 3)


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A small PNG that claims width x height: IHDR, one short IDAT, IEND (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "I;16", "LA", "CMYK"])
def test_any_mode_converts_to_what_the_model_takes(mode: str) -> None:
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    for spec in (GREY, RGB):
        arr = decode_to_array(encode(img, fmt), spec, max_pixels=10**6)
        assert arr.shape == (spec.height, spec.width, spec.channels)
        assert arr.dtype == np.uint8


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    img = Image.fromarray(np.full((10, 10), 40000, dtype=np.uint16))
    arr = decode_to_array(encode(img), GREY, max_pixels=10**6)
    assert 150 < arr.mean() < 255


def test_exif_rotation_is_applied() -> None:
    img = Image.new("L", (20, 10), 0)
    img.paste(255, (0, 0, 10, 10))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    arr = decode_to_array(data, ImageSpec(20, 10, 1), max_pixels=10**6)
    # Displayed upright, the image is 10 wide and 20 tall, white on top (resized to 20x10 here).
    assert arr[: arr.shape[0] // 2].mean() > 200 > 50 > arr[arr.shape[0] // 2 :].mean()


def test_jpeg_gif_bmp_webp_decode() -> None:
    img = Image.new("RGB", (12, 12), (255, 255, 255))
    for fmt in ("JPEG", "GIF", "BMP", "WEBP"):
        assert decode_to_array(encode(img, fmt), GREY, max_pixels=10**6).mean() > 240


def test_corrupt_and_empty_data_are_bad_requests() -> None:
    with pytest.raises(BadRequest):
        decode(b"", max_pixels=10**6)
    with pytest.raises(BadRequest, match="cannot decode"):
        decode(b"definitely not an image", max_pixels=10**6)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    full = encode(noise, "JPEG")
    truncated = full[: len(full) // 2]
    with pytest.raises(BadRequest, match="corrupt or truncated"):
        decode(truncated, max_pixels=10**6)


def test_decompression_bomb_header_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge):
        decode(png_header_only(50_000, 50_000), max_pixels=40_000_000)
    with pytest.raises(PayloadTooLarge, match="limit"):
        decode(png_header_only(5_000, 5_000), max_pixels=1_000_000)


def test_declared_type_must_match_the_bytes() -> None:
    png = encode(Image.new("L", (8, 8)))
    with pytest.raises(UnsupportedMediaType, match="declared image/jpeg but holds a PNG"):
        decode(png, max_pixels=10**6, content_type="image/jpeg")
    for generic in (None, "application/octet-stream", "image/*", "image/png"):
        assert decode(png, max_pixels=10**6, content_type=generic).format == "PNG"


def test_words_tokenizer_of_older_models() -> None:
    assert split_words("Not BAD at all, wasn’t it?") == ["not", "bad", "at", "all", "wasn't", "it"]
    tok = Tokenizer.build(["good film", "bad film", "film"], max_length=4, scheme="words")
    assert tok.vocab[:3] == ["<pad>", "<unk>", "film"]
    ids = tok.encode("good film zebra")
    assert ids.tolist() == [tok.vocab.index("good"), 2, tok.unk_id]
    assert len(tok.encode("film " * 50)) == 4  # truncated to max_length
    assert tok.encode("!!!").tolist() == [tok.unk_id]  # no word: one unknown, never empty
    # A model.json written before the tokenizer field reads as ``words``.
    old = {"lowercase": True, "max_length": 8, "pad_id": 0, "unk_id": 1}
    assert Tokenizer.from_preprocessing(old, vocab=tok.vocab).scheme == "words"


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Good movie.", ["good", "movie", "."]),
        ("I don't like it", ["i", "do", "n't", "like", "it"]),  # as GloVe (PTB) splits "n't"
        ("can't, won't, ain't", ["ca", "n't", ",", "wo", "n't", ",", "ai", "n't"]),
        (
            "It’s what I’m after, you're right",
            ["it", "'s", "what", "i", "'m", "after", ",", "you", "'re", "right"],
        ),
        ("dont like it, cant stand it", ["do", "n't", "like", "it", ",", "ca", "n't", "stand", "it"]),
        ("1,000 stars, 3.5/5 and 10/10!", ["1,000", "stars", ",", "3.5/5", "and", "10/10", "!"]),
        ("the 20th-century classic", ["the", "20th-century", "classic"]),
        ("so happy :) :-( ;D <3", ["so", "happy", ":)", ":-(", ";d", "<3"]),
        ("Love it ❤️👍", ["love", "it", "❤", "👍"]),
        ("@bob check https://x.co/a #blessed", ["check", "blessed"]),
        ("WAIT... what?!", ["wait", "...", "what", "?", "!"]),
        ("«Très bien» -- naïve", ["«", "très", "bien", "»", "--", "naïve"]),
    ],
)
def test_glove_tokenizer_splits_as_glove_was_trained(text: str, tokens: list[str]) -> None:
    assert split_glove(text) == tokens


def test_glove_tokenizer_second_chance_for_unknown_words() -> None:
    vocab = ["<pad>", "<unk>", "so", "good", "well", "-", "made", "10", "/", "the", "film"]
    tok = Tokenizer(vocab, max_length=6, scheme="glove")
    ids = lambda text: [vocab[i] for i in tok.encode(text)]  # noqa: E731
    assert ids("Sooooo goooood") == ["so", "good"]  # elongation undone
    assert ids("well-made film") == ["well", "-", "made", "film"]  # compound split when unknown
    assert ids("10/10") == ["10", "/", "10"]
    assert ids("zzzz-qqq the") == ["<unk>", "the"]  # no known part: one unknown
    assert len(tok.encode("well-made " * 10)) == 6  # truncation counts the split parts
    assert ids("@someone") == ["<unk>"] and ids("x") == ["<unk>"]  # never empty
    with pytest.raises(ValueError, match="unknown tokenizer"):
        Tokenizer(vocab, scheme="bpe")


def test_tokenizer_refuses_bad_client_text() -> None:
    tok = Tokenizer.build(["a"])
    for bad, match in ((3, "must be a string"), ("   ", "empty"), ("x" * 11, "limit is 10")):
        with pytest.raises(InvalidInput, match=match):
            tok.encode_checked(bad, max_chars=10)


def test_pad_batch_right_pads_to_the_longest() -> None:
    out = pad_batch([np.array([5, 6]), np.array([7]), np.array([1, 2, 3])], pad_id=0)
    assert out.tolist() == [[5, 6, 0], [7, 0, 0], [1, 2, 3]]
