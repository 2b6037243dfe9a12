"""Texts for transformer models: subword tokens from the model's tokenizer.json (service/kinds/subword/preprocess.py).

A request's texts are recognised as the ``text`` kind's (JSON ``text``/``texts``, text/plain, form fields,
V2 BYTES); this kind is a ``TextKind`` subclass, so a text request may go to either kind of text model,
and it claims no request bodies of its own. Per model version it feeds ``input_ids`` and
``attention_mask`` (and ``token_type_ids`` when the graph has that input), right-padded to the request's
longest text here and to the batch's longest in service/collate.py. A text longer than the model's
declared ``max_length`` is cut there and its prediction says so (``truncated``). V2 tensor requests may
send the ids and mask themselves; they are checked against the vocabulary and the length cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from service.config import Settings
from service.errors import InvalidInput, LoadError
from service.kinds import register
from service.kinds.base import Prepared, check_count
from service.kinds.subword.preprocess import SubwordTokenizer, check_texts
from service.kinds.text.kind import TextKind
from service.runtime import Feeds, OnnxModel

if TYPE_CHECKING:
    from service.repository.model_files import ModelMeta

IDS, MASK, TYPES = "input_ids", "attention_mask", "token_type_ids"


@register
class SubwordKind(TextKind):
    name = "subword"
    noun = "text"
    # Request bodies are the text kind's (it is registered first and claims them); none here, so the
    # registry never offers the same JSON field or content type twice.
    media_types = frozenset()
    json_fields: ClassVar[dict[str, bool]] = {}
    form_fields = False
    accepts = ""

    def __init__(self, tokenizer: SubwordTokenizer, with_types: bool) -> None:
        self.subword = tokenizer
        self.with_types = with_types
        self.vocab_size = tokenizer.tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def load(cls, meta: ModelMeta, model_dir: Path, model: OnnxModel) -> Self:
        pre = meta.section("subword")
        filename = pre.get("tokenizer", "tokenizer.json")
        if not (model_dir / filename).is_file():
            raise LoadError(f"model.json's preprocessing.subword names {filename!r}, which the version lacks")
        try:
            tokenizer = SubwordTokenizer.from_preprocessing(pre, model_dir)
        except (KeyError, TypeError, ValueError) as e:
            raise LoadError(f"preprocessing.subword: {e}") from None
        except Exception:  # the tokenizers library's own parse errors
            raise LoadError(f"{filename} is not a tokenizer file the tokenizers library reads") from None
        inputs = {spec.name: spec for spec in model.inputs}
        wanted = {IDS, MASK} | ({TYPES} if TYPES in inputs else set())
        if set(inputs) != wanted:
            raise LoadError(
                f"a subword text model takes {IDS}, {MASK} (and {TYPES}); the graph has {sorted(inputs)}"
            )
        for spec in inputs.values():
            if spec.datatype != "INT64" or len(spec.shape) != 2:
                raise LoadError(
                    f"input {spec.name!r} must be INT64 [-1, -1], the graph has {spec.datatype} {list(spec.shape)}"
                )
        return cls(tokenizer, TYPES in inputs)

    def pad_values(self) -> dict[str, int]:
        # Requests of different lengths join a batch right-padded: [PAD] ids, a 0 mask (ignored tokens).
        pads = {IDS: self.subword.pad_id, MASK: 0}
        return pads | ({TYPES: 0} if self.with_types else {})

    async def prepare(self, items: Sequence[Any], settings: Settings, pool: Executor) -> Prepared:
        """Batch-encode on the decoding pool: {input_ids, attention_mask[, token_type_ids]}: int64 (N, T)."""
        check_count(len(items), "texts", settings)
        texts = check_texts(items, settings.max_text_chars)
        enc = await asyncio.get_running_loop().run_in_executor(pool, self.subword.encode, texts)
        feeds = {IDS: enc.input_ids, MASK: enc.attention_mask}
        if self.with_types:
            feeds[TYPES] = enc.token_type_ids
        cap = self.subword.max_length
        notes = [
            {"truncated": True, "tokens": n, "max_length": cap} if cut else {}
            for cut, n in zip(enc.truncated, enc.lengths, strict=True)
        ]
        return Prepared(feeds, len(texts), notes if any(enc.truncated) else None)

    def check_feeds(self, feeds: Feeds) -> None:
        """V2 tensors: ids inside the vocabulary, a 0/1 mask of the same shape, at most max_length long."""
        ids, mask = feeds[IDS], feeds[MASK]
        if ids.shape != mask.shape:
            raise InvalidInput(f"{IDS} {list(ids.shape)} and {MASK} {list(mask.shape)} must have one shape")
        if self.with_types and feeds[TYPES].shape != ids.shape:
            raise InvalidInput(f"{TYPES} must have the shape of {IDS}, {list(ids.shape)}")
        if ids.shape[1] == 0:
            raise InvalidInput(f"{IDS} holds no tokens: send at least [CLS] and [SEP]")
        if ids.shape[1] > self.subword.max_length:
            raise InvalidInput(f"{ids.shape[1]} tokens; the model takes at most {self.subword.max_length}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise InvalidInput(f"{IDS} must lie in [0, {self.vocab_size})")
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise InvalidInput(f"{MASK} must hold only 0 and 1")
        if self.with_types and feeds[TYPES].size and not np.isin(feeds[TYPES], (0, 1)).all():
            raise InvalidInput(f"{TYPES} must hold only 0 and 1")

    def explain(self, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
        """The subword tokens the model read (special tokens included, padding not), their ids, and
        whether each is a known piece (not [UNK])."""
        tok = self.subword.tokenizer
        rows = []
        for ids, mask in zip(feeds[IDS].tolist(), feeds[MASK].tolist(), strict=True):
            ids = [i for i, m in zip(ids, mask, strict=True) if m]
            tokens = [tok.id_to_token(i) or "" for i in ids]
            known = [i != self.subword.unk_id for i in ids]
            rows.append(
                {"input": {"tokens": tokens, "known": known, "ids": ids, "unknown_id": self.subword.unk_id}}
            )
        return rows

    def describe(self) -> dict[str, Any]:
        """What a client building V2 tensors needs: the cap, the pad id, the vocabulary size."""
        return {
            "tokenizer": {
                "library": "tokenizers",
                "max_length": self.subword.max_length,
                "pad_id": self.subword.pad_id,
                "vocab_size": self.vocab_size,
            }
        }
