"""The GloVe vocabulary, its embedding matrix, the Rotten Tomatoes reader, and the augmentation, on small
data each test writes itself (the pinned packages are `make data`'s, not the tests')."""

from __future__ import annotations

import bz2
import csv
from pathlib import Path

import numpy as np

from service.kinds.text.preprocess import PAD, UNK
from training.kinds.text.augment import (
    NEGATIVE,
    NEGATIVE_PREDICATES,
    POSITIVE,
    POSITIVE_PREDICATES,
    clause_phrases,
    lexicon_phrases,
)
from training.kinds.text.glove import build_vocabulary, embedding_matrix, glove_tokenizer
from training.kinds.text.sources import WordVectors, read_rotten_tomatoes

WORDS = ["the", ",", ".", "good", "movie", "n't", "do", "love", "bad", "film", "flimsy", "awful", "zebra"]


def small_glove() -> WordVectors:
    vectors = np.random.default_rng(0).normal(size=(len(WORDS), 4)).astype(np.float32)
    return WordVectors(list(WORDS), vectors)


def test_vocabulary_takes_top_words_training_words_lexicon_and_aliases() -> None:
    glove = small_glove()
    lexicon = {"good": 3, "bad": -3, "awful": -3, "love": 3, "cashing in": 1}
    train = ["A good movie.", "a good film, zebra zebra", "unknownword unknownword"]
    vocab = build_vocabulary(train, glove, lexicon, top=4, min_train_count=2)
    assert vocab[:2] == [PAD, UNK]
    # GloVe's top 4, "zebra" (twice in training, GloVe knows it), AFINN words GloVe knows; GloVe's order.
    assert vocab[2:] == ["the", ",", ".", "good", "love", "bad", "awful", "zebra", "<3", "❤", "♥", "😍", "🥰"]
    assert "film" not in vocab and "unknownword" not in vocab  # once in training / unknown to GloVe

    matrix = embedding_matrix(vocab, glove, lexicon)
    assert matrix.shape == (len(vocab), 5) and matrix.dtype == np.float32
    assert not matrix[:2].any()  # pad and unknown are zero
    assert np.array_equal(matrix[vocab.index("zebra"), :4], glove.vectors[WORDS.index("zebra")])
    assert matrix[vocab.index("bad"), 4] == -0.6 and matrix[vocab.index("zebra"), 4] == 0
    # An alias reads as its word: "<3" as "love", lexicon score included.
    assert np.array_equal(matrix[vocab.index("<3")], matrix[vocab.index("love")])

    tok = glove_tokenizer(vocab, max_length=16)
    assert [vocab[i] for i in tok.encode("Good, bad <3 film")] == ["good", ",", "bad", "<3", UNK]
    assert tok.preprocessing()["tokenizer"] == "glove"


def test_rotten_tomatoes_reader_drops_plots_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "rt.csv.bz2"
    rows = [
        ("plot", "A man walks into a bank."),
        ("fresh", "A  triumph."),
        ("rotten", "A mess."),
        ("rotten", "A triumph."),  # the same snippet again (spacing aside): kept once, first label
        ("fresh", "   "),
    ]
    with bz2.open(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        writer.writerows((c, t, "m", "True") for c, t in rows)
    data = read_rotten_tomatoes(path)
    assert data.texts == ["A triumph.", "A mess."]
    assert data.labels.tolist() == [POSITIVE, NEGATIVE]


def test_augmentation_is_seeded_balanced_and_flips_negations() -> None:
    lexicon = {"good": 3, "great": 3, "bad": -3, "awful": -3, "ok": 1, ":)": 2}
    first = lexicon_phrases(lexicon, np.random.default_rng(1), 400)
    assert first == lexicon_phrases(lexicon, np.random.default_rng(1), 400)
    labels = [label for _, label in first]
    assert 150 < sum(labels) < 250
    for text, label in first:
        low = text.lower()
        assert "ok" not in low.split() and ":)" not in low.replace(" :)", "")  # weak and non-words left out
        negated = low.startswith(("not ", "wasn't ", "isn't ", "it's not ", "never "))
        positive_word = any(w in low for w in ("good", "great"))
        if " and " not in low:
            assert label == (POSITIVE if positive_word != negated else NEGATIVE), text
    clauses = clause_phrases(np.random.default_rng(2), 300)
    assert len({t for t, _ in clauses}) > 250
    contrasts = [(t.lower().split(" but ")[1], label) for t, label in clauses if " but " in t.lower()]
    assert len(contrasts) > 30
    for after_but, label in contrasts:  # labelled by the clause after "but"
        said = {POSITIVE for p in POSITIVE_PREDICATES if p in after_but}
        said |= {NEGATIVE for p in NEGATIVE_PREDICATES if p in after_but}
        assert said == {label}, after_but
