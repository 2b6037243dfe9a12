"""BatchPolicy: every batching decision of one model version, apart from the queue that acts on them
(batching.py's DynamicBatcher). Pure: sizes, times and the run times it has learnt; no loop, no futures.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchPolicy:
    """Every batching decision of one model version: how many rows a batch takes, how long it waits for
    more, how long a request may queue, how many batches run at once, and whether a batch runs on the
    event loop or in an inference thread (learnt from the runs it has seen)."""

    max_batch_size: int = 64
    max_queue_delay_ms: float = 0.0
    max_queue_size: int = 512
    timeout_s: float = 30.0
    instances: int = 1
    inline_run_ms: float = 0.0
    """Runs known to take at most this long run on the event loop itself (0: never)."""
    gather_ms: float = 1.0
    """With no queue delay: how long the first of a crowd waits for the rest of it (0: never). The crowd
    is the requests the last batch answered, when its answers went out within this window: closed-loop
    callers come back together, so holding the first for the others turns many runs of one into one run
    of many."""
    _run_s: dict[int, float] = field(default_factory=dict, init=False, repr=False)
    """Seconds per run, by batch size class (rows rounded up to a power of two), from real runs."""

    def __post_init__(self) -> None:
        self.max_queue_delay_s = self.max_queue_delay_ms / 1000.0
        self.inline_run_s = self.inline_run_ms / 1000.0
        self.gather_s = self.gather_ms / 1000.0

    def gathers(self, crowd: int, queued: int, queued_rows: int) -> bool:
        """Whether to hold ``queued`` requests for the rest of a ``crowd`` known to be coming back (the
        requests the last batch answered, see ``crowd``): never with a queue delay (that is the wait
        then), never for a lone caller (a crowd of one), never past a full batch."""
        return (
            not self.max_queue_delay_s
            and self.gather_s > 0
            and queued < crowd
            and queued_rows < self.max_batch_size
        )

    def crowd(self, answered: int, ended: float, now: float) -> int:
        """The callers expected back: those the last batch answered, if its answers went out (``ended``)
        within the gathering window (0 otherwise: an idle model has no crowd, and a lone request runs at
        once)."""
        return answered if now - ended <= self.gather_s else 0

    def takes(self, batch_rows: int, rows: int) -> bool:
        """Whether a batch of ``batch_rows`` rows so far takes a request of ``rows`` more (the first
        request always: one bigger than the maximum runs alone)."""
        return not batch_rows or batch_rows + rows <= self.max_batch_size

    def waits_for_more(self, queued_rows: int) -> bool:
        """Whether to wait (up to the queue delay, from the first arrival) for a fuller batch."""
        return self.max_queue_delay_s > 0 and queued_rows < self.max_batch_size

    def runs_at_once(self, rows: int, crowd: int = 0) -> bool:
        """Whether a lone request on an idle batcher runs inside ``enqueue``: no delay to wait for, no
        crowd of callers coming back to wait for, and its run known to be short."""
        return not self.max_queue_delay_s and not self.gathers(crowd, 1, rows) and self.inline(rows)

    def inline(self, rows: int) -> bool:
        """Whether a run of ``rows`` rows is known to be short enough to run on the event loop itself.

        Handing a run to the inference thread costs two thread switches and, while the loop is busy, a
        wait for the GIL of up to sys.getswitchinterval() (5 ms) each time the thread needs it back: far
        more than a small model's run. Unknown sizes go to the thread first, which measures them.
        """
        known = self._run_s.get(_size_class(rows))
        return known is not None and known <= self.inline_run_s

    def learn(self, rows: int, seconds: float) -> None:
        """A run of ``rows`` rows took ``seconds`` (a dict write: atomic under the GIL, so the inference
        threads call it too)."""
        key = _size_class(rows)
        old = self._run_s.get(key)
        self._run_s[key] = seconds if old is None else 0.8 * old + 0.2 * seconds


def _size_class(rows: int) -> int:
    return (rows - 1).bit_length()  # 1 -> 0, 2 -> 1, 3-4 -> 2, 5-8 -> 3, ...
