"""Tokenizer and vocabulary for text models; training imports this module, so there is one copy.

Two tokenisations, named in model.json's ``preprocessing.text.tokenizer``:

- ``glove`` (new models): GloVe 6B's own, the Stanford PTB tokenizer lower-cased: punctuation split off,
  "don't" -> "do" "n't", "can't" -> "ca" "n't", "it's" -> "it" "'s", numbers kept whole ("1,000", "3.5",
  "10/10"), emoticons kept whole (":)", ":-(", "<3"). Tweets are read kindly: "#great" -> "great",
  @handles and URLs dropped, "dont" -> "do" "n't". At encode time a word outside the vocabulary gets a
  second chance: "sooooo" -> "so", "well-made" -> "well" "-" "made", before it falls to unknown.
- ``words`` (models written before it, whose model.json names no tokenizer): word runs only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import InvalidInput

PAD, UNK = "<pad>", "<unk>"
_APOSTROPHES = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "`": "'", "\u201c": '"', "\u201d": '"', "\ufe0f": None}
)  # U+FE0F only asks for an emoji's colour form: "❤️" is "❤"

# ------------------------------------------------------------------------------------------- words
# Words (letters and digits of any script) with inner apostrophes kept: "wasn't", "don't".
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def split_words(text: str, lowercase: bool = True) -> list[str]:
    """The ``words`` tokenisation: word runs, punctuation dropped."""
    text = text.translate(_APOSTROPHES)
    if lowercase:
        text = text.lower()
    return _WORD.findall(text)


# ------------------------------------------------------------------------------------------- glove
_URL = re.compile(r"(?:https?://|www\.)\S+")
_MENTION = re.compile(r"(?<!\w)@\w+")
# Emoticons, read before punctuation would split them: eyes, an optional nose, a mouth; and hearts.
_EMOTICON = r"(?:[:;=][\-o*']?[)\](\[dDpP/\\|3]+(?![a-zA-Z])|[)(\]\[][\-o*']?[:;=]|</?3+)"
# GloVe's (PTB's) clitics split from their word: "n't", "'s", "'re", "'ve", "'ll", "'d", "'m".
_TOKEN = re.compile(
    "|".join(
        (
            _EMOTICON,
            r"\d+(?:[.,:/]\d+)*(?![^\W_])",  # numbers: 1990, 1,000, 3.5, 10/10, 9:30 (not "20th")
            r"[^\W\d_]+(?=n't\b)",  # "do" of "don't"; "ca" of "can't", as GloVe has them
            r"n't\b",
            r"'(?:s|re|ve|ll|d|m)\b",
            r"[^\W_]+(?:[-.][^\W_]+)*",  # words, with inner hyphens or dots kept: "well-made", "u.s"
            r"\.\.\.|--|[^\w\s]",  # "...", "--", any other symbol alone
        )
    )
)
# Negations written without an apostrophe, as tweets and quick reviews do: "dont" means "do n't".
_AUXILIARIES = "do does did is was are were could would should have has had must need might"
_BARE_NEGATIONS = {w + "nt": [w, "n't"] for w in _AUXILIARIES.split()} | {
    "cant": ["ca", "n't"],
    "wont": ["wo", "n't"],
    "aint": ["ai", "n't"],
    "im": ["i", "'m"],
}
_ELONGATED = re.compile(r"(.)\1{2,}")


def split_glove(text: str, lowercase: bool = True) -> list[str]:
    """The ``glove`` tokenisation (see the module docstring)."""
    text = text.translate(_APOSTROPHES)
    text = _MENTION.sub(" ", _URL.sub(" ", text))
    if lowercase:
        # Emoticons keep their case ("xD", ":P"); lowering them is harmless as the pattern accepts both.
        text = text.lower()
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        if token == "#":  # "#great" -> "great"; the hash carries no sentiment
            continue
        tokens.extend(_BARE_NEGATIONS.get(token, (token,)))
    return tokens


def _second_chance(token: str, index: dict[str, int]) -> list[int]:
    """Ids for a token outside the vocabulary: elongation undone ("sooo" -> "soo" -> "so"), then
    compounds split at hyphens, slashes and dots; empty if none of it is known."""
    for short in (_ELONGATED.sub(r"\1\1", token), _ELONGATED.sub(r"\1", token)):
        if short in index:
            return [index[short]]
    parts = [p for p in re.split(r"([-/.])", token) if p]
    if len(parts) > 1 and any(p in index for p in parts if p not in "-/."):
        return [index[p] for p in parts if p in index]
    return []


SPLITTERS: dict[str, Callable[[str, bool], list[str]]] = {"words": split_words, "glove": split_glove}


@dataclass
class Tokenizer:
    """Maps text to int64 token ids; id 0 pads, id 1 stands for words outside the vocabulary."""

    vocab: list[str]
    lowercase: bool = True
    max_length: int = 64
    pad_id: int = 0
    unk_id: int = 1
    scheme: str = "glove"
    _index: dict[str, int] = field(init=False, repr=False)
    _split: Callable[[str, bool], list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in SPLITTERS:
            raise ValueError(f"unknown tokenizer {self.scheme!r}; known: {sorted(SPLITTERS)}")
        self._index = {word: i for i, word in enumerate(self.vocab)}
        self._split = SPLITTERS[self.scheme]

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        max_size: int = 20000,
        min_freq: int = 1,
        lowercase: bool = True,
        max_length: int = 64,
        scheme: str = "glove",
    ) -> Tokenizer:
        """A vocabulary of the most frequent tokens (ties broken alphabetically, so builds repeat)."""
        split = SPLITTERS[scheme]
        counts = Counter(word for text in texts for word in split(text, lowercase))
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(
            [PAD, UNK, *ranked[: max_size - 2]], lowercase=lowercase, max_length=max_length, scheme=scheme
        )

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` before the vocabulary is looked up."""
        return self._split(text, self.lowercase)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of shape (T,), 1 <= T <= max_length; a text with no token encodes as one unknown."""
        index, unk = self._index, self.unk_id
        ids: list[int] = []
        for token in self.tokens(text):
            if token in index:
                ids.append(index[token])
            elif self.scheme == "words":
                ids.append(unk)
            else:
                ids.extend(_second_chance(token, index) or (unk,))
            if len(ids) >= self.max_length:
                break
        return np.asarray(ids[: self.max_length] or [unk], dtype=np.int64)

    def encode_checked(self, text: object, max_chars: int) -> np.ndarray:
        """``encode`` for text a client sent: refuses non-strings, empty and over-long texts."""
        return self.encode(check_text(text, max_chars))

    def save_vocab(self, path: Path) -> None:
        path.write_text("\n".join(self.vocab) + "\n", encoding="utf-8")

    def preprocessing(self, vocabulary: str = "vocab.txt") -> dict[str, Any]:
        """model.json's ``preprocessing.text`` for this tokenizer (read back by ``from_preprocessing``)."""
        return {
            "vocabulary": vocabulary,
            "tokenizer": self.scheme,
            "lowercase": self.lowercase,
            "max_length": self.max_length,
            "pad_id": self.pad_id,
            "unk_id": self.unk_id,
        }

    @classmethod
    def from_preprocessing(
        cls, pre: dict[str, Any], vocab: list[str] | None = None, model_dir: Path | None = None
    ) -> Tokenizer:
        """The tokenizer model.json's ``preprocessing.text`` describes; the vocabulary given, or read from
        its file in ``model_dir``. A model.json without ``tokenizer`` predates it: ``words``."""
        if vocab is None:
            assert model_dir is not None, "give the vocabulary or the model folder that holds it"
            vocab = (model_dir / pre.get("vocabulary", "vocab.txt")).read_text(encoding="utf-8").splitlines()
        return cls(
            vocab,
            lowercase=pre["lowercase"],
            max_length=pre["max_length"],
            pad_id=pre["pad_id"],
            unk_id=pre["unk_id"],
            scheme=pre.get("tokenizer", "words"),
        )


def pad_batch(sequences: list[np.ndarray], pad_id: int) -> np.ndarray:
    """Right-pad 1-D id arrays to the longest of them: (N, T_max) int64."""
    width = max(len(s) for s in sequences)
    out = np.full((len(sequences), width), pad_id, dtype=np.int64)
    for row, seq in zip(out, sequences, strict=True):
        row[: len(seq)] = seq
    return out


def check_text(text: object, max_chars: int) -> str:
    """A text a client sent, for any text kind: refuses non-strings, empty and over-long texts (422)."""
    if not isinstance(text, str):
        raise InvalidInput(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInput("text is empty")
    if len(text) > max_chars:
        raise InvalidInput(f"text has {len(text)} characters; the limit is {max_chars}")
    return text
