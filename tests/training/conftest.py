"""Training tests train on one thread, as `make models` does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from training.kinds.audio.commands import LABELS

COMMANDS_CLIPS = Path(__file__).parents[1] / "data" / "commands"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small nets gain little from a second thread on a quiet machine, and on a busy one two threads spend
    their time waiting for each other: the image fixture trained in 56 s on one thread at load 26, and
    had not finished in 300 s on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def words_split(tmp_path: Path) -> Path:
    """The explicit-split folder layout of an audio data set, from the committed held-out clips: two clips
    per label to train, the rest to validate and test (symlinks)."""
    data = tmp_path / "words"
    for label in LABELS:
        clips = sorted((COMMANDS_CLIPS / label).glob("*.wav"))
        for split, chosen in (("train", clips[:2]), ("validation", clips[2:]), ("test", clips[2:])):
            (data / split / label).mkdir(parents=True)
            for clip in chosen:
                (data / split / label / clip.name).symlink_to(clip)
    return data
