"""Tokenizer and vocabulary for text models; training imports this module, so there is one copy."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import InvalidInput

PAD, UNK = "<pad>", "<unk>"
# Words (letters and digits of any script) with inner apostrophes kept: "wasn't", "don't".
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


def split_words(text: str, lowercase: bool = True) -> list[str]:
    """The word tokens of ``text``: the unit the vocabulary is built from."""
    text = text.translate(_APOSTROPHES)
    if lowercase:
        text = text.lower()
    return _TOKEN.findall(text)


@dataclass
class Tokenizer:
    """Maps text to int64 token ids; id 0 pads, id 1 stands for words outside the vocabulary."""

    vocab: list[str]
    lowercase: bool = True
    max_length: int = 64
    pad_id: int = 0
    unk_id: int = 1
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {word: i for i, word in enumerate(self.vocab)}

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        max_size: int = 20000,
        min_freq: int = 1,
        lowercase: bool = True,
        max_length: int = 64,
    ) -> Tokenizer:
        """A vocabulary of the most frequent words (ties broken alphabetically, so builds repeat)."""
        counts = Counter(word for text in texts for word in split_words(text, lowercase))
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *ranked[: max_size - 2]], lowercase=lowercase, max_length=max_length)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of shape (T,), 1 <= T <= max_length; a text with no word encodes as one unknown."""
        index, unk = self._index, self.unk_id
        ids = [index.get(w, unk) for w in split_words(text, self.lowercase)[: self.max_length]]
        return np.asarray(ids or [unk], dtype=np.int64)

    def encode_checked(self, text: object, max_chars: int) -> np.ndarray:
        """``encode`` for text a client sent: refuses non-strings, empty and over-long texts."""
        if not isinstance(text, str):
            raise InvalidInput(f"text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InvalidInput("text is empty")
        if len(text) > max_chars:
            raise InvalidInput(f"text has {len(text)} characters; the limit is {max_chars}")
        return self.encode(text)

    def save_vocab(self, path: Path) -> None:
        path.write_text("\n".join(self.vocab) + "\n", encoding="utf-8")

    @classmethod
    def from_preprocessing(
        cls, pre: dict[str, Any], vocab: list[str] | None = None, model_dir: Path | None = None
    ) -> Tokenizer:
        """The tokenizer model.json's ``preprocessing.text`` describes; the vocabulary given, or read from
        its file in ``model_dir``."""
        if vocab is None:
            assert model_dir is not None, "give the vocabulary or the model folder that holds it"
            vocab = (model_dir / pre.get("vocabulary", "vocab.txt")).read_text(encoding="utf-8").splitlines()
        return cls(
            vocab,
            lowercase=pre["lowercase"],
            max_length=pre["max_length"],
            pad_id=pre["pad_id"],
            unk_id=pre["unk_id"],
        )


def pad_batch(sequences: list[np.ndarray], pad_id: int) -> np.ndarray:
    """Right-pad 1-D id arrays to the longest of them: (N, T_max) int64."""
    width = max(len(s) for s in sequences)
    out = np.full((len(sequences), width), pad_id, dtype=np.int64)
    for row, seq in zip(out, sequences, strict=True):
        row[: len(seq)] = seq
    return out
