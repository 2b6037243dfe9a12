"""Benchmarks: bench/run.py measures modelserve against raw onnxruntime, the HTTP ceiling and a naive server."""
