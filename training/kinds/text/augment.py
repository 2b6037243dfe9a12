"""Short-text augmentation for sentiment: what critics' snippets seldom hold, and users often send.

Rotten Tomatoes snippets are one long, literate sentence about a film. Users send "good", "Love it!",
"not bad at all", "battery died after two days". Two generators add such texts to the training split
(never to validation or test, so the held-out figures stay the corpus's):

- ``lexicon_phrases``: AFINN's scored words, alone or with an intensifier or punctuation ("so awful",
  "excellent!"), negated with the label flipped ("not good", "wasn't bad"), paired ("cheap and flimsy").
- ``clause_phrases``: a subject from everyday domains (products, food, places, apps, films) with a predicate
  of known polarity, first-person likes and dislikes, their negations, and "X but Y" contrasts labelled
  by the clause after "but". The phrase pools are written for this project.
"""

from __future__ import annotations

import numpy as np

NEGATIVE, POSITIVE = 0, 1

_INTENSIFIERS = ["", "", "so ", "very ", "really ", "just ", "absolutely ", "pretty ", "totally ", "quite "]
_ENDINGS = ["", "", ".", "!", "!!", " :)", "..."]
_NEGATORS = ["not ", "not very ", "not at all ", "wasn't ", "isn't ", "it's not ", "never ", "not so "]

SUBJECTS = [
    "this movie", "the film", "the product", "this phone", "the battery", "the service", "the food",
    "this app", "the hotel", "the book", "my order", "the delivery", "this place", "the staff", "the show",
    "the update", "these shoes", "the coffee", "the sound quality", "the game", "this restaurant",
    "the camera", "the room", "the price", "it", "this", "the ending", "the seller", "the concert", "the car",
]  # fmt: skip
POSITIVE_PREDICATES = [
    "is great", "was excellent", "works perfectly", "is amazing", "was worth every penny", "is wonderful",
    "exceeded my expectations", "is fantastic", "was a pleasure", "is the best", "is really good",
    "was delicious", "is brilliant", "was fun", "is beautiful", "works great", "is solid", "was perfect",
    "was a delight", "is superb", "is well made", "was fast and friendly", "is lovely", "is reliable",
    "was outstanding", "is awesome", "made my day", "is impressive", "was helpful", "is top notch",
]  # fmt: skip
NEGATIVE_PREDICATES = [
    "is terrible", "was awful", "stopped working", "is the worst", "broke after a week",
    "was a waste of money", "is horrible", "was disappointing", "is useless", "is garbage", "was boring",
    "is broken", "was rude", "tastes bad", "is overpriced", "was a disaster", "is junk", "is poor",
    "keeps crashing", "was slow and unhelpful", "is cheap and flimsy", "was a letdown", "is ugly",
    "was dirty", "is unreliable", "fell apart", "is pathetic", "was painful", "is annoying", "sucks",
]  # fmt: skip
POSITIVE_VERBS = ["love", "like", "enjoy", "adore", "recommend", "appreciate"]
NEGATIVE_VERBS = ["hate", "dislike", "regret", "despise", "can't stand"]
OBJECTS = ["it", "this", "this movie", "the product", "this phone", "the food", "this place", "the app"]
_SUBJECT_STARTS = ["i ", "we ", "i really ", "i absolutely ", "honestly i ", "my kids "]
_NEGATED_STARTS = ["i don't ", "i didn't ", "we didn't ", "i do not ", "i did not "]


def _choice(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _styled(rng: np.random.Generator, text: str) -> str:
    """Case and ending as people type them: lower, Sentence, or SHOUTED; with or without a full stop."""
    text += _choice(rng, _ENDINGS)
    r = rng.random()
    if r < 0.35:
        return text[:1].upper() + text[1:]
    if r < 0.4:
        return text.upper()
    return text


def lexicon_phrases(lexicon: dict[str, int], rng: np.random.Generator, n: int) -> list[tuple[str, int]]:
    """``n`` short phrases built from the lexicon's single words scored at least 2 in size."""
    words = sorted(w for w, s in lexicon.items() if abs(s) >= 2 and w.replace("-", "").isalpha())
    by_sign = {POSITIVE: [w for w in words if lexicon[w] > 0], NEGATIVE: [w for w in words if lexicon[w] < 0]}
    out = []
    for _ in range(n):
        label = int(rng.integers(2))
        word = _choice(rng, by_sign[label])
        r = rng.random()
        if r < 0.45:
            text = _choice(rng, _INTENSIFIERS) + word
        elif r < 0.7:
            text, label = _choice(rng, _NEGATORS) + word, 1 - label
            if rng.random() < 0.3:
                text += " at all"
        else:
            text = f"{word} and {_choice(rng, by_sign[label])}"
        out.append((_styled(rng, text), label))
    return out


def clause_phrases(rng: np.random.Generator, n: int) -> list[tuple[str, int]]:
    """``n`` short sentences from the subject/predicate and like/dislike pools."""
    predicates = {POSITIVE: POSITIVE_PREDICATES, NEGATIVE: NEGATIVE_PREDICATES}
    verbs = {POSITIVE: POSITIVE_VERBS, NEGATIVE: NEGATIVE_VERBS}
    out = []
    for _ in range(n):
        label = int(rng.integers(2))
        r = rng.random()
        if r < 0.4:
            text = f"{_choice(rng, SUBJECTS)} {_choice(rng, predicates[label])}"
        elif r < 0.6:
            text = f"{_choice(rng, _SUBJECT_STARTS)}{_choice(rng, verbs[label])} {_choice(rng, OBJECTS)}"
        elif r < 0.75:
            # "I don't mind it" (mildly positive) stands for the negated "can't stand".
            verb = _choice(rng, verbs[label]).replace("can't stand", "mind")
            text, label = f"{_choice(rng, _NEGATED_STARTS)}{verb} {_choice(rng, OBJECTS)}", 1 - label
        else:
            first = f"{_choice(rng, SUBJECTS)} {_choice(rng, predicates[1 - label])}"
            second = f"{_choice(rng, SUBJECTS)} {_choice(rng, predicates[label])}"
            text = f"{first} but {second}"
        out.append((_styled(rng, text), label))
    return out
