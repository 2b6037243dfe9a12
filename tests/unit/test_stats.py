"""The statistics extension's counts, as perf_analyzer reads them between two snapshots."""

from service.stats import ModelStats


def _counts(stats: ModelStats) -> tuple[int, int, int]:
    s = stats.as_dict()["inference_stats"]
    return s["compute_input"]["count"], s["compute_infer"]["count"], s["compute_output"]["count"]


def test_compute_counts_move_together_across_a_run_and_its_answers() -> None:
    # perf_analyzer aborts ("compute counts must be the same") when a snapshot taken after a batch ran
    # but before its requests were answered shows different compute counts.
    stats = ModelStats("m", 1)
    stats.on_batch(rows=3, requests=3, run_s=0.002)
    assert _counts(stats) == (0, 0, 0)
    assert stats.compute_infer.ns == 6_000_000
    for _ in range(3):
        stats.on_request(True, 1, 0.004, 0.001, 0.0005)
    assert _counts(stats) == (3, 3, 3)
    assert stats.as_dict()["execution_count"] == 1
