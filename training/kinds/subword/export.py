"""Export a fine-tuned encoder classifier (training/kinds/subword/recipe.py) to ONNX with its tokenizer.

torch.onnx.export (inputs ``input_ids`` and ``attention_mask``, dynamic batch and sequence axes;
outputs ``logits`` and ``probabilities``), onnx.checker, onnxruntime parity with torch at batch sizes 1
and 7 and alone vs batched with longer texts (1e-4). Then two int8 variants are scored beside fp32 on the
validation split (chosen on) and the test split (reported): int8-stored weights computed in fp32
(training/int8_weights.py) and onnxruntime's dynamic int8. ``--weights auto`` ships the int8-stored
weights when they keep validation accuracy within ``MAX_INT8_DROP_POINTS`` of fp32, else fp32; dynamic
int8 only when asked, as its answers move with their batch-mates. The tokenizer.json is written beside the
graph with its padding off and truncation at ``--max-length``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.kinds.subword.preprocess import SubwordTokenizer
from training.datasets import TextData
from training.kinds import TOLERANCE
from training.kinds.subword.recipe import KIND, EncoderClassifier, EncoderClassifierConfig
from training.kinds.text.data import load_texts

log = logging.getLogger(__name__)

MAX_INT8_DROP_POINTS = 1.0


def load_classifier(ckpt: dict[str, Any]) -> EncoderClassifier:
    """The checkpoint's network (the encoder's architecture from its package, the weights from ``ckpt``)."""
    net = EncoderClassifier(EncoderClassifierConfig(**ckpt["net_config"]), pretrained=False)
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def checkpoint_tokenizer(ckpt: dict[str, Any]) -> SubwordTokenizer:
    from tokenizers import Tokenizer

    return SubwordTokenizer(
        Tokenizer.from_str(ckpt["tokenizer_json"]), ckpt["preprocessing"][KIND]["max_length"]
    )


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(sess: Any, ids: np.ndarray, mask: np.ndarray, output: str = "logits") -> np.ndarray:
    return sess.run([output], {"input_ids": ids, "attention_mask": mask})[0]


def check_parity(ckpt: dict[str, Any], net: EncoderClassifier, onnx_path: Path) -> float:
    """onnxruntime vs torch at batch sizes 1 and 7, and each text alone vs padded into the batch: the
    worst logit difference; ExportError past TOLERANCE."""
    from training.kinds import ExportError

    tok = checkpoint_tokenizer(ckpt)
    sess = _session(onnx_path)
    worst = 0.0
    samples = list(ckpt["samples"])
    for texts in (samples[:1], samples[:7]):
        enc = tok.encode(texts)
        with torch.no_grad():
            expected = net(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask)).numpy()
        diff = float(np.abs(expected - _run(sess, enc.input_ids, enc.attention_mask)).max())
        worst = max(worst, diff)
        if diff > TOLERANCE:
            raise ExportError(f"onnxruntime differs from torch by {diff:.2e} at batch size {len(texts)}")
    enc = tok.encode(samples)
    batched = _run(sess, enc.input_ids, enc.attention_mask)
    for i, text in enumerate(samples):
        one = tok.encode([text])
        diff = float(np.abs(_run(sess, one.input_ids, one.attention_mask)[0] - batched[i]).max())
        worst = max(worst, diff)
        if diff > TOLERANCE:
            raise ExportError(f"the graph is not padding invariant: sample {i} differs by {diff:.2e}")
    return worst


def _accuracy(path: Path, tok: SubwordTokenizer, data: TextData, size: int = 64) -> tuple[float, np.ndarray]:
    """Accuracy of the graph at ``path`` on ``data``, and its probabilities (N, K)."""
    sess = _session(path)
    probs = []
    for start in range(0, len(data.texts), size):
        enc = tok.encode(data.texts[start : start + size])
        probs.append(_run(sess, enc.input_ids, enc.attention_mask, "probabilities"))
    p = np.concatenate(probs)
    return float((p.argmax(1) == data.labels).mean()), p


WEIGHTS = ("auto", "fp32", "int8-weights", "int8-dynamic")


def compare_weights(
    ckpt: dict[str, Any], fp32: Path, staging: Path
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The fp32 graph beside two int8 variants, scored on the validation split (chosen on) and the test
    split (reported only): int8 weight storage computed in fp32 (training/int8_weights.py), and
    onnxruntime's dynamic int8 (QInt8 weights per channel, activations quantised per run)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from training.int8_weights import int8_weights

    paths = {"fp32": fp32, "int8-weights": staging / "w8.onnx", "int8-dynamic": staging / "dyn8.onnx"}
    int8_weights(fp32, paths["int8-weights"])
    quantize_dynamic(str(fp32), str(paths["int8-dynamic"]), weight_type=QuantType.QInt8, per_channel=True)
    tok = checkpoint_tokenizer(ckpt)
    splits = load_texts(ckpt["data"]["source"], ckpt["data"]["seed"])
    figures: dict[str, Any] = {}
    for variant, path in paths.items():
        row: dict[str, Any] = {"size": path.stat().st_size}
        for split, data in (("validation", splits.validation), ("test", splits.test)):
            acc, _ = _accuracy(path, tok, data)
            row[f"{split}_accuracy"] = round(acc, 5)
        row["max_logit_shift_alone_vs_batched"] = _batch_shift(ckpt, path)
        figures[variant] = row
        log.info("%s: %s", variant, row)
    return figures, paths


def export_transformer(
    checkpoint: Path, models_dir: Path, name: str, version: int | None = None, weights: str = "auto"
) -> Path:
    """Write models/<name>/<version>/{model.onnx, model.json, tokenizer.json}; returns the folder.

    ``weights``: one of WEIGHTS; ``auto``: int8-weights when its validation accuracy is within
    MAX_INT8_DROP_POINTS of fp32's, else fp32."""
    from service.repository.model_files import TensorDecl
    from training.export import classifier_meta, install_version, next_version, write_graph
    from training.kinds import ExportError

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    net = load_classifier(ckpt)
    version = version or next_version(models_dir / name)
    tok = checkpoint_tokenizer(ckpt)
    dummy = tok.encode(list(ckpt["samples"][:2]))
    axes = {0: "batch", 1: "sequence"}
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        onnx_path = staging / "model.onnx"
        write_graph(
            net,
            {"input_ids": dummy.input_ids, "attention_mask": dummy.attention_mask},
            onnx_path,
            {"input_ids": axes, "attention_mask": axes},
        )
        max_diff = check_parity(ckpt, net, onnx_path)
        log.info("%s v%d: onnxruntime parity %.2e (<= %.0e)", name, version, max_diff, TOLERANCE)
        quantized: dict[str, Any] | None = None
        if weights != "fp32":
            figures, paths = compare_weights(ckpt, onnx_path, staging)
            drop = (
                figures["fp32"]["validation_accuracy"] - figures["int8-weights"]["validation_accuracy"]
            ) * 100
            chosen = (
                weights if weights != "auto" else "int8-weights" if drop <= MAX_INT8_DROP_POINTS else "fp32"
            )
            quantized = {
                "shipped": chosen,
                "rule": f"--weights {weights}: auto ships int8-weights when its validation accuracy is within "
                f"{MAX_INT8_DROP_POINTS} point of fp32's (int8-dynamic's answers move with their batch-mates)",
                "variants": figures,
            }
            log.info("%s v%d: ships %s", name, version, chosen)
            if chosen != "fp32":
                paths[chosen].replace(onnx_path)
            for path in paths.values():
                if path != onnx_path:  # the shipped one was moved there already
                    path.unlink(missing_ok=True)
        inputs = [
            TensorDecl(name=n, datatype="INT64", shape=[-1, -1]) for n in ("input_ids", "attention_mask")
        ]
        classifier_meta(ckpt, name, version, KIND, inputs, max_diff, quantized).write(staging)
        tok.save(staging / "tokenizer.json")
        if not (staging / "model.onnx").is_file():
            raise ExportError("no graph was written")
        return install_version(staging, models_dir / name, version)


def _batch_shift(ckpt: dict[str, Any], path: Path) -> float:
    """The largest logit move of a sample text alone vs batched with the others (dynamic int8 scales
    activations per run, so there a text's answer moves with what it is batched with)."""
    tok = checkpoint_tokenizer(ckpt)
    sess = _session(path)
    enc = tok.encode(list(ckpt["samples"]))
    batched = _run(sess, enc.input_ids, enc.attention_mask)
    worst = 0.0
    for i, text in enumerate(ckpt["samples"]):
        one = tok.encode([text])
        worst = max(worst, float(np.abs(_run(sess, one.input_ids, one.attention_mask)[0] - batched[i]).max()))
    return round(worst, 6)
