"""GloVe-initialised text models: the vocabulary, its embedding matrix, and short-text augmentation.

The vocabulary is GloVe's most frequent words (``top``), every training token GloVe knows that appears at
least twice, the lexicon's words GloVe knows, and a few emoji and emoticons GloVe lacks (each given the
vector of a word that means the same). Words outside it read as unknown. The embedding is frozen: a word
the training data never showed ("flimsy", "refund") keeps its GloVe neighbourhood, so the model reads it
as it reads the words near it that training did show.

Each row is GloVe's 50 numbers plus one: the word's AFINN score / 5 (0 for words AFINN does not score), a
lexicon feature the LSTM can read beside the vector (negation then flips it in context).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

import numpy as np

from service.kinds.text.preprocess import PAD, UNK, Tokenizer, split_glove
from training.kinds.text.sources import WordVectors

log = logging.getLogger(__name__)

# Tokens GloVe 6B lacks, read as a word it has (emoji and emoticons that Wikipedia and news seldom hold).
ALIASES = {
    "<3": "love",
    "</3": "heartbroken",
    "(:": ":)",
    "):": ":(",
    "❤": "love",
    "♥": "love",
    "💔": "heartbroken",
    "😊": ":)",
    "🙂": ":)",
    "😀": ":)",
    "😃": ":)",
    "😄": ":)",
    "😁": ":)",
    "😍": "love",
    "🥰": "love",
    "😂": "lol",
    "🤣": "lol",
    "👍": "excellent",
    "👌": "perfect",
    "🙏": "thanks",
    "🎉": "congratulations",
    "😢": ":(",
    "😭": "crying",
    "😞": ":(",
    "🙁": ":(",
    "☹": ":(",
    "😠": "angry",
    "😡": "furious",
    "🤬": "furious",
    "👎": "terrible",
    "🤮": "disgusting",
    "😒": "annoyed",
    "😩": "ugh",
}


def build_vocabulary(
    train_texts: Iterable[str],
    glove: WordVectors,
    lexicon: dict[str, int],
    top: int = 30000,
    min_train_count: int = 2,
) -> list[str]:
    """``<pad>``, ``<unk>``, then the words in GloVe's frequency order, then the aliases."""
    counts = Counter(t for text in train_texts for t in split_glove(text))
    index = glove.index()
    wanted = set(glove.words[:top])
    wanted |= {t for t, c in counts.items() if c >= min_train_count and t in index}
    wanted |= {w for w in lexicon if w in index}
    words = sorted(wanted, key=index.__getitem__)
    aliases = [a for a, target in ALIASES.items() if a not in index and target in index]
    return [PAD, UNK, *words, *aliases]


def embedding_matrix(vocab: list[str], glove: WordVectors, lexicon: dict[str, int]) -> np.ndarray:
    """(V, D + 1) float32: GloVe vectors (aliases take their target's), then AFINN / 5; pad and unknown 0."""
    index = glove.index()
    dim = glove.vectors.shape[1]
    out = np.zeros((len(vocab), dim + 1), dtype=np.float32)
    for i, word in enumerate(vocab[2:], start=2):
        source = word if word in index else ALIASES[word]
        out[i, :dim] = glove.vectors[index[source]]
        out[i, dim] = lexicon.get(word, lexicon.get(source, 0)) / 5.0
    return out


def glove_tokenizer(vocab: list[str], max_length: int) -> Tokenizer:
    return Tokenizer(vocab, lowercase=True, max_length=max_length, pad_id=0, unk_id=1, scheme="glove")
