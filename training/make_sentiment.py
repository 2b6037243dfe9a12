"""Write the bundled sentiment set, training/datasets/sentiment.csv (text, label, split).

    python -m training.make_sentiment            # rewrites the shipped file, byte for byte the same

Short English reviews written for this project from hand-made phrase pools: many subjects (films, books,
restaurants, gadgets, hotels, apps), plain and intensified opinions, negations that flip the meaning
("not good", "never disappointing", "not bad at all"), contrasts ("I expected to hate it, but ...") and
mixed clauses whose last word decides. Balanced, de-duplicated, with a fixed 70/15/15 split.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).parent / "datasets" / "sentiment.csv"
SEED = 20261123
PER_LABEL = 1500

SUBJECTS = [
    "film",
    "movie",
    "book",
    "novel",
    "album",
    "song",
    "show",
    "series",
    "documentary",
    "play",
    "restaurant",
    "cafe",
    "pizza",
    "burger",
    "meal",
    "dessert",
    "coffee",
    "menu",
    "hotel",
    "room",
    "stay",
    "flight",
    "trip",
    "tour",
    "phone",
    "laptop",
    "camera",
    "headphones",
    "keyboard",
    "charger",
    "speaker",
    "tablet",
    "watch",
    "app",
    "game",
    "update",
    "website",
    "course",
    "class",
    "service",
    "product",
    "purchase",
    "gift",
    "sequel",
    "ending",
    "soundtrack",
    "plot",
    "story",
    "cast",
    "acting",
    "design",
    "battery",
    "screen",
]
POS_ADJ = [
    "good",
    "great",
    "excellent",
    "wonderful",
    "fantastic",
    "brilliant",
    "superb",
    "lovely",
    "amazing",
    "delightful",
    "charming",
    "enjoyable",
    "impressive",
    "outstanding",
    "terrific",
    "solid",
    "beautiful",
    "fun",
    "smart",
    "moving",
    "gripping",
    "reliable",
    "comfortable",
    "tasty",
    "delicious",
    "fresh",
    "perfect",
    "satisfying",
    "clever",
    "stunning",
    "pleasant",
    "remarkable",
    "sturdy",
    "helpful",
    "friendly",
    "fast",
]
NEG_ADJ = [
    "bad",
    "terrible",
    "awful",
    "horrible",
    "boring",
    "dull",
    "disappointing",
    "poor",
    "mediocre",
    "dreadful",
    "bland",
    "clumsy",
    "frustrating",
    "tedious",
    "weak",
    "annoying",
    "cheap",
    "flimsy",
    "slow",
    "broken",
    "confusing",
    "stale",
    "rude",
    "noisy",
    "overpriced",
    "forgettable",
    "pointless",
    "sloppy",
    "ugly",
    "unreliable",
    "painful",
    "lifeless",
    "greasy",
    "buggy",
    "useless",
    "awkward",
]
POS_VERB = ["loved", "enjoyed", "adored", "liked", "appreciated", "treasured", "relished"]
NEG_VERB = ["hated", "disliked", "regretted", "despised", "loathed", "resented"]
INTENS = ["", "", "", "really ", "very ", "truly ", "incredibly ", "so ", "quite ", "absolutely ", "pretty "]
OPENERS = ["", "", "", "honestly, ", "overall, ", "well, ", "to be fair, ", "in short, ", "frankly, "]
DETS = ["this", "the", "that", "our", "my"]
POS_PHRASES = [
    "worth every penny",
    "a real gem",
    "highly recommended",
    "a pleasure from start to finish",
    "exceeded my expectations",
    "money well spent",
    "a joy to use",
    "five stars",
    "a must see",
    "would buy again",
    "better than i hoped",
    "i want more",
    "a great experience",
    "an instant favourite",
    "it made my day",
    "i would recommend it to anyone",
    "a breath of fresh air",
    "top notch",
    "i will definitely come back",
    "i would happily buy it again",
    "i keep coming back to it",
    "i can't stop using it",
    "everyone should try it",
]
NEG_PHRASES = [
    "a waste of money",
    "a waste of time",
    "a total letdown",
    "one star",
    "avoid it",
    "never again",
    "a complete mess",
    "not worth the price",
    "i want my money back",
    "a huge disappointment",
    "stay away",
    "it broke after a week",
    "worse than i feared",
    "i fell asleep",
    "a rip off",
    "i would not recommend it",
    "returned it the next day",
    "what a mess",
    "i would never buy this again",
    "i will never go back",
    "i gave up halfway",
    "do not bother",
    "save your money",
]
# Negations: the adjective's sentiment flips.
NEGATORS = ["not", "not at all", "never", "hardly", "far from", "not exactly", "by no means"]
NEG_OF_NEG = [  # negated negatives read as positive
    "not bad at all",
    "never disappointing",
    "not boring for a second",
    "nothing to complain about",
    "no complaints",
    "not a single dull moment",
    "could not be happier",
    "never a problem",
    "not bad",
    "not disappointing in the least",
    "i can't fault it",
    "hard to find a flaw",
]
NEG_OF_POS = [  # negated positives read as negative
    "not good",
    "not worth it",
    "not great",
    "wasn't good",
    "not impressed",
    "didn't enjoy it",
    "couldn't recommend it",
    "not as good as promised",
    "never worked properly",
    "didn't like it",
    "not fun at all",
    "nothing special",
]


def _adj(rng: random.Random, positive: bool) -> str:
    return rng.choice(INTENS) + rng.choice(POS_ADJ if positive else NEG_ADJ)


def _review(rng: random.Random, positive: bool) -> str:
    subj = rng.choice(SUBJECTS)
    det = rng.choice(DETS)
    opener = rng.choice(OPENERS)
    kind = rng.randrange(12)
    pos_word = rng.choice(POS_ADJ)
    neg_word = rng.choice(NEG_ADJ)
    if kind == 0:
        text = f"{det} {subj} was {_adj(rng, positive)}"
    elif kind == 1:
        verb = rng.choice(POS_VERB if positive else NEG_VERB)
        text = f"i {verb} {det} {subj}"
    elif kind == 2:
        phrase = rng.choice(POS_PHRASES if positive else NEG_PHRASES)
        text = f"{_adj(rng, positive)}, {phrase}"
    elif kind == 3:  # negation flips a word of the other polarity
        word = neg_word if positive else pos_word
        text = f"{det} {subj} is {rng.choice(NEGATORS)} {word}"
    elif kind == 4:
        phrase = rng.choice(NEG_OF_NEG if positive else NEG_OF_POS)
        text = f"{det} {subj}? {phrase}"
    elif kind == 5:  # contrast: the clause after "but" decides
        before = rng.choice(NEG_ADJ if positive else POS_ADJ)
        text = f"i expected it to be {before}, but {det} {subj} was {_adj(rng, positive)}"
    elif kind == 6:
        phrase = rng.choice(POS_PHRASES if positive else NEG_PHRASES)
        text = f"{det} {subj}: {phrase}"
    elif kind == 7:
        other = rng.choice(SUBJECTS)
        text = f"the {other} was {_adj(rng, positive)} and the {subj} was {_adj(rng, positive)} too"
    elif kind == 8:
        phrase = rng.choice(NEG_OF_NEG if positive else NEG_OF_POS)
        text = f"{phrase}, {_adj(rng, positive)} {subj}"
    elif kind == 9:
        verb = "would" if positive else "would not"
        text = f"i {verb} recommend {det} {subj}, it is {_adj(rng, positive)}"
    elif kind == 10:  # a mild opposite remark, then the verdict
        minor = rng.choice(NEG_ADJ if positive else POS_ADJ)
        verdict = rng.choice(POS_PHRASES if positive else NEG_PHRASES)
        text = f"the {rng.choice(SUBJECTS)} was a bit {minor}, but overall {verdict}"
    else:
        verb = rng.choice(POS_VERB if positive else NEG_VERB)
        text = f"{_adj(rng, positive)} {subj}, i {verb} it"
    text = opener + text
    text = text[0].upper() + text[1:]
    return text + rng.choice([".", ".", "!", "", "..."])


def generate(seed: int = SEED, per_label: int = PER_LABEL) -> list[tuple[str, str, str]]:
    """(text, label, split) rows: balanced, de-duplicated, shuffled, split 70/15/15."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, str]] = []
    for label, positive in (("negative", False), ("positive", True)):
        seen: set[str] = set()
        texts: list[str] = []
        while len(texts) < per_label:
            text = _review(rng, positive)
            if text.lower() not in seen:
                seen.add(text.lower())
                texts.append(text)
        n_train, n_val = int(per_label * 0.70), int(per_label * 0.15)
        for i, text in enumerate(texts):
            split = "train" if i < n_train else "validation" if i < n_train + n_val else "test"
            rows.append((text, label, split))
    rng.shuffle(rows)
    return rows


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label", "split"])
        writer.writerows(generate())


if __name__ == "__main__":
    main()
