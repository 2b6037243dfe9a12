"""Batch assembly, runtime-neutral: join requests' feeds into few runs (padding variable-length inputs to
the longest), split the answers back by rows, and when a joined run fails find the culprit by running
each request alone. Beside the batcher, used by any Runtime through ``run_batch(run, ...)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Feeds = dict[str, np.ndarray]
Run = Callable[[Feeds], Feeds]


def run_batch(
    run: Run, payloads: list[Feeds], pad_values: Mapping[str, int | float], batchable: bool = True
) -> list[Feeds | Exception]:
    """Run many requests' feeds (each with its own leading batch axis) as few runs; one answer each (an
    exception for a request that failed: it fails alone)."""
    if not batchable or len(payloads) == 1:
        return [_guarded(run, p) for p in payloads]
    if _one_input_alike(payloads):  # the usual batch: one group, without working the groups out
        return _joined(run, payloads, pad_values)
    results: list[Feeds | Exception] = [Exception("not run")] * len(payloads)
    for members in groups(payloads, pad_values):
        group = [payloads[i] for i in members]
        answers = [_guarded(run, group[0])] if len(group) == 1 else _joined(run, group, pad_values)
        for i, answer in zip(members, answers, strict=True):
            results[i] = answer
    return results


def _one_input_alike(payloads: list[Feeds]) -> bool:
    """Whether every request has the same single input with the same shape past the batch axis: then
    ``groups`` would make one group of them all, with nothing to pad."""
    first = payloads[0]
    if len(first) != 1:
        return False
    [(name, head)] = first.items()
    trailing = head.shape[1:]
    for feeds in payloads:
        arr = feeds.get(name)
        if arr is None or len(feeds) != 1 or arr.shape[1:] != trailing:
            return False
    return True


def groups(payloads: list[Feeds], pad_values: Mapping[str, int | float]) -> list[list[int]]:
    """Indices of the requests that can share a run: equal shapes past the batch axis, except inputs that
    may be padded (token ids), which join when their lengths are within a factor of two (the same power
    of two bucket): a transformer's work grows with the padded length, so one long text padding seven short
    ones to its length would cost more than running it apart."""
    by_key: dict[tuple[object, ...], list[int]] = {}
    for i, feeds in enumerate(payloads):
        key = tuple(
            arr.shape[1].bit_length() if name in pad_values and arr.ndim > 1 else arr.shape[1:]
            for name, arr in sorted(feeds.items())
        )
        by_key.setdefault(key, []).append(i)
    return list(by_key.values())


def join(group: list[Feeds], pad_values: Mapping[str, int | float]) -> tuple[Feeds, list[int]]:
    """One feed per input for the whole group, and each request's rows (to split the answer)."""
    rows = [len(next(iter(f.values()))) for f in group]
    return {name: _concat([f[name] for f in group], pad_values.get(name)) for name in group[0]}, rows


def split(outputs: Feeds, rows: list[int]) -> list[Feeds]:
    """The joined run's outputs back per request, by rows."""
    # Plain slices (views): np.split makes each piece through Python-level swapaxes calls, a few
    # microseconds per request and output.
    answers = []
    start = 0
    for n in rows:
        end = start + n
        answers.append({name: arr[start:end] for name, arr in outputs.items()})
        start = end
    return answers


def _guarded(run: Run, feeds: Feeds) -> Feeds | Exception:
    try:
        return run(feeds)
    except Exception as e:  # the runtime's own errors: fail this request only
        return e


def _joined(run: Run, group: list[Feeds], pad_values: Mapping[str, int | float]) -> list[Feeds | Exception]:
    joined, rows = join(group, pad_values)
    try:
        out = run(joined)
    except Exception:
        # Something in the joined run failed: run each alone so only the culprit fails.
        return [_guarded(run, f) for f in group]
    return list(split(out, rows))


def _concat(arrays: list[np.ndarray], pad: int | float | None) -> np.ndarray:
    if pad is not None:
        width = max(a.shape[1] for a in arrays)
        if any(a.shape[1] != width for a in arrays):
            arrays = [
                a
                if a.shape[1] == width
                else np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=pad)
                for a in arrays
            ]
    return np.concatenate(arrays)
