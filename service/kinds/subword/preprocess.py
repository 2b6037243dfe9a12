"""Subword tokenisation for transformer text models, from the model's own ``tokenizer.json``; training
imports this module too, so a model sees at serving exactly the ids it was trained on.

The Rust ``tokenizers`` library reads the file (WordPiece, BPE or Unigram, with its normaliser and
special tokens); nothing here depends on ``transformers`` or torch. Whatever padding and truncation the
file carries are overridden: no padding (a batch is padded to its longest member when it is joined, see
service/collate.py), truncation at the ``max_length`` model.json declares (a text cut there is flagged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from service.kinds.text.preprocess import check_text


@dataclass
class Encoded:
    """One batch of texts, right-padded to its longest: int64 (N, T) ids, mask and type ids, and per
    text whether truncation cut it and how many tokens it had before the cut."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: list[bool]
    lengths: list[int]


class SubwordTokenizer:
    """A ``tokenizers.Tokenizer`` with padding off and truncation at ``max_length`` (special tokens
    included)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        if max_length < 3:
            raise ValueError(f"max_length must leave room for the special tokens, got {max_length}")
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer = tokenizer
        self.max_length = max_length
        # The same tokenizer uncut: how long a truncated text was (rare, so counted only for those).
        self._uncut = Tokenizer.from_str(tokenizer.to_str())
        self._uncut.no_truncation()
        pad = tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad
        unk = tokenizer.token_to_id("[UNK]")
        self.unk_id = -1 if unk is None else unk

    @classmethod
    def from_file(cls, path: Path, max_length: int) -> SubwordTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_length)

    @classmethod
    def from_preprocessing(cls, pre: dict[str, Any], model_dir: Path) -> SubwordTokenizer:
        """The tokenizer model.json's ``preprocessing.subword`` describes (``tokenizer``: the file)."""
        tok = cls.from_file(model_dir / pre.get("tokenizer", "tokenizer.json"), int(pre["max_length"]))
        if int(pre.get("pad_id", tok.pad_id)) != tok.pad_id:
            raise ValueError(f"pad_id {pre['pad_id']} is not the tokenizer's [PAD] id {tok.pad_id}")
        return tok

    def preprocessing(self, filename: str = "tokenizer.json") -> dict[str, Any]:
        """model.json's ``preprocessing.subword`` for this tokenizer."""
        return {
            "tokenizer": filename,
            "library": "tokenizers",
            "max_length": self.max_length,
            "pad_id": self.pad_id,
            "unk_id": self.unk_id,
        }

    def save(self, path: Path) -> None:
        """The tokenizer.json as served: padding off, truncation at ``max_length``."""
        self.tokenizer.save(str(path), pretty=False)

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Batch-encode (the library spreads a large batch over its own threads) and right-pad."""
        texts = list(texts)
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        truncated, lengths = [], []
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = e.attention_mask
            types[row, :n] = e.type_ids
            truncated.append(bool(e.overflowing))
            lengths.append(len(self._uncut.encode(texts[row]).ids) if e.overflowing else n)
        return Encoded(ids, mask, types, truncated, lengths)

    def tokens(self, text: str) -> list[str]:
        """The subword tokens the model reads for ``text`` (special tokens included, cut at the cap)."""
        return list(self.tokenizer.encode(text).tokens)


def check_texts(items: Sequence[object], max_chars: int) -> list[str]:
    """Texts a client sent: refuses non-strings, empty and over-long texts (InvalidInput, 422)."""
    return [check_text(text, max_chars) for text in items]
