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


def test_one_input_of_one_shape_is_one_run_split_by_rows() -> None:
    """The usual batch (collate's shortcut): one run, each request its own rows back, as the general way
    (groups, join, split) answers it; another shape among them sends the batch the general way."""
    runs: list[int] = []

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runs.append(len(feeds["ids"]))
        return {"y": feeds["ids"].sum(axis=1)}

    feeds = [{"ids": np.full((n, 4), n, dtype=np.int64)} for n in (1, 3, 2)]
    answers = collate.run_batch(run, feeds, {"ids": 0})
    assert runs == [6]
    assert [a["y"].tolist() for a in answers] == [[4], [12, 12, 12], [8, 8]]  # type: ignore[index]
    runs.clear()
    mixed = [*feeds, {"ids": np.ones((1, 5), dtype=np.int64)}]  # padded to 5: the general way, one group
    answers = collate.run_batch(run, mixed, {"ids": 0})
    assert runs == [7] and [a["y"].tolist() for a in answers][-1] == [5]  # type: ignore[index]
