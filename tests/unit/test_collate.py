"""Batch assembly on plain functions: groups, padding to the longest, split by rows, the culprit alone."""

from __future__ import annotations

import numpy as np

from service import collate


def test_join_pads_to_the_longest_and_split_returns_each_requests_rows() -> None:
    a = {"ids": np.array([[1, 2, 3]]), "x": np.zeros((1, 2))}
    b = {"ids": np.array([[4], [5]]), "x": np.ones((2, 2))}
    joined, rows = collate.join([a, b], {"ids": 0})
    assert rows == [1, 2]
    assert joined["ids"].tolist() == [[1, 2, 3], [4, 0, 0], [5, 0, 0]] and joined["x"].shape == (3, 2)
    back = collate.split({"y": np.arange(3)}, rows)
    assert [p["y"].tolist() for p in back] == [[0], [1, 2]]


def test_groups_keep_unpaddable_shapes_apart() -> None:
    feeds = [{"x": np.zeros((1, 2))}, {"x": np.zeros((1, 3))}, {"x": np.zeros((4, 2))}]
    assert collate.groups(feeds, {}) == [[0, 2], [1]]
    assert collate.groups(feeds, {"x": 0}) == [[0, 1, 2]]


def test_padded_inputs_join_within_a_factor_of_two_in_length() -> None:
    """A 100-token text runs apart from 10-token ones rather than padding them all to 100."""
    widths = [10, 12, 100, 15, 70, 3]
    feeds = [
        {"ids": np.ones((1, w), dtype=np.int64), "mask": np.ones((1, w), dtype=np.int64)} for w in widths
    ]
    assert collate.groups(feeds, {"ids": 0, "mask": 0}) == [[0, 1, 3], [2, 4], [5]]


def test_a_failing_request_fails_alone() -> None:
    runs: list[int] = []

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runs.append(len(feeds["x"]))
        if (feeds["x"] < 0).any():
            raise ValueError("negative")
        return {"y": feeds["x"] * 2}

    good, bad = {"x": np.ones((2, 1))}, {"x": -np.ones((1, 1))}
    answers = collate.run_batch(run, [good, bad, good], {})
    assert runs == [5, 2, 1, 2]  # the joined run, then each alone
    assert answers[0]["y"].tolist() == [[2], [2]] and isinstance(answers[1], ValueError)  # type: ignore[index]
    assert collate.run_batch(run, [good, good], {}, batchable=False) and runs[-2:] == [2, 2]
