"""modelserve: ONNX classifiers served over HTTP with dynamic batching."""

__version__ = "0.1.0"
