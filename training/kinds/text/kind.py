"""Texts for training: the LSTM recipe (recipe.py beside it), its options, padding invariance at export."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.kinds.text.preprocess import Tokenizer, pad_batch
from service.repository.model_files import TensorDecl
from training.kinds import register
from training.kinds.base import TOLERANCE, ExportError, GraphInput, TrainingKind

if TYPE_CHECKING:
    import onnxruntime as ort
    from torch import nn

    from training.train import TrainConfig


def encoded(ckpt: dict[str, Any], texts: list[str] | None = None) -> list[np.ndarray]:
    """Token ids of ``texts`` (default: the checkpoint's sample texts) with the checkpoint's tokenizer."""
    tok = Tokenizer.from_preprocessing(ckpt["preprocessing"]["text"], ckpt["vocab"])
    return [tok.encode(t) for t in (ckpt["samples"] if texts is None else texts)]


def _pad_id(ckpt: dict[str, Any]) -> int:
    return int(ckpt["preprocessing"]["text"]["pad_id"])


@register
class TextTraining(TrainingKind):
    name = "text"
    summary = "train an LSTM on texts"
    data_help = (
        "'rotten_tomatoes' (make data), a CSV/JSONL file with text,label[,split], or an aclImdb folder"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--max-length", type=int, default=128, help="tokens kept per text")
        parser.add_argument("--vocab-size", type=int, default=20000)
        parser.add_argument("--hidden", type=int, default=96, help="LSTM hidden size")
        parser.add_argument(
            "--glove-top",
            type=int,
            default=None,
            help="frozen GloVe 50d + AFINN embedding over GloVe's N most frequent words and the "
            "training words (make data); default: a learned embedding",
        )
        parser.add_argument("--tuned-dim", type=int, default=0, help="learned dimensions beside GloVe's")
        parser.add_argument("--bidirectional", action="store_true", help="a second LSTM reads backwards")
        parser.add_argument(
            "--augment", type=int, default=0, help="add N short phrases (negative/positive data only)"
        )

    def train(self, args: argparse.Namespace, cfg: TrainConfig) -> Path:
        from training.kinds.text.recipe import train_text_model

        return train_text_model(
            args.data,
            args.name,
            args.runs,
            cfg,
            max_length=args.max_length,
            vocab_size=args.vocab_size,
            glove_top=args.glove_top,
            augment=args.augment,
            hidden_dim=args.hidden,
            tuned_dim=args.tuned_dim,
            bidirectional=args.bidirectional,
        )

    def build_net(self, net_config: dict[str, Any]) -> nn.Module:
        from training.nets import TextLSTM, TextLSTMConfig

        return TextLSTM(TextLSTMConfig(**net_config))

    def graph_input(self, ckpt: dict[str, Any]) -> GraphInput:
        return GraphInput(
            TensorDecl(name="ids", datatype="INT64", shape=[-1, -1]),
            {0: "batch", 1: "sequence"},
            np.ones((2, 5), dtype=np.int64),
        )

    def sample_batches(self, ckpt: dict[str, Any]) -> list[np.ndarray]:
        ids = encoded(ckpt)
        return [pad_batch(ids[:1], _pad_id(ckpt)), pad_batch(ids[:7], _pad_id(ckpt))]

    def check_invariance(self, ckpt: dict[str, Any], sess: ort.InferenceSession) -> float:
        """Each sample text alone vs batched with longer texts: logits must agree within TOLERANCE."""
        ids = encoded(ckpt)
        batched = sess.run(["logits"], {"ids": pad_batch(ids, _pad_id(ckpt))})[0]
        worst = 0.0
        for i, seq in enumerate(ids):
            alone = sess.run(["logits"], {"ids": seq[None, :]})[0][0]
            diff = float(np.abs(alone - batched[i]).max())
            worst = max(worst, diff)
            if diff > TOLERANCE:
                raise ExportError(f"text model is not padding invariant: sample {i} differs by {diff:.2e}")
        return worst

    def test_set(self, ckpt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from training.kinds.text.data import load_texts

        texts = load_texts(ckpt["data"]["source"], ckpt["data"]["seed"]).test
        return pad_batch(encoded(ckpt, texts.texts), _pad_id(ckpt)), texts.labels

    def extra_files(self, ckpt: dict[str, Any]) -> dict[str, str]:
        return {"vocab.txt": "\n".join(ckpt["vocab"]) + "\n"}
