"""Texts: JSON strings, text/plain bodies, multipart fields, V2 BYTES of UTF-8 strings.

Tokenising is service/kinds/text/preprocess.py's (training uses the same code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from service.config import Settings
from service.errors import BadRequest, InvalidInput, LoadError
from service.kinds import register
from service.kinds.base import InputKind, Prepared, check_count, single_input
from service.kinds.text.preprocess import Tokenizer, pad_batch
from service.runtime import Feeds, OnnxModel

if TYPE_CHECKING:
    from service.repository.model_files import ModelMeta

# Tokenising this many characters or more moves to a thread, off the event loop.
_TEXT_INLINE_CHARS = 8192


@register
class TextKind(InputKind):
    name = "text"
    media_types = frozenset({"text/plain"})
    json_fields: ClassVar[dict[str, bool]] = {"text": False, "texts": True}
    form_fields = True
    accepts = 'JSON {"text"|"texts"}, a text/plain body, multipart form fields'

    def __init__(self, tokenizer: Tokenizer, input_name: str) -> None:
        self.tokenizer = tokenizer
        self.input_name = input_name

    @classmethod
    def from_body(cls, data: bytes, media_type: str) -> list[Any]:
        try:
            return [data.decode("utf-8")]
        except UnicodeDecodeError:
            raise BadRequest(f"the {media_type or 'text'} body is not valid UTF-8") from None

    @classmethod
    def load(cls, meta: ModelMeta, model_dir: Path, model: OnnxModel) -> Self:
        tokenizer = Tokenizer.from_preprocessing(meta.section("text"), model_dir=model_dir)
        graph_input = single_input(model, "text")
        if graph_input.datatype != "INT64" or len(graph_input.shape) != 2:
            raise LoadError(
                f"text model input must be INT64 [-1, -1], graph has {graph_input.datatype} "
                f"{list(graph_input.shape)}"
            )
        return cls(tokenizer, graph_input.name)

    def check_feeds(self, feeds: Feeds) -> None:
        """V2 token ids: inside the vocabulary, and each row its tokens first, then padding. The graph reads
        a row up to its first pad id (a token after it would be dropped unread) and is undefined on a row
        of padding only; an id outside the vocabulary fails its embedding lookup."""
        ids = feeds[self.input_name]
        tok = self.tokenizer
        name = self.input_name
        if ids.shape[1] == 0:
            raise InvalidInput(
                f"{name} holds no tokens: send at least one id a row ({tok.unk_id} is an unknown word)"
            )
        # One reduction for both ends: a negative id is a huge unsigned one.
        if ids.size and ids.view(np.uint64).max() >= len(tok.vocab):
            raise InvalidInput(f"{name} must lie in [0, {len(tok.vocab)})")
        pad = tok.pad_id
        if np.count_nonzero(ids if pad == 0 else ids != pad) != ids.size:  # padding: only at rows' ends
            tokens = ids != pad
            empty = np.flatnonzero(~tokens[:, 0])
            if empty.size:
                raise InvalidInput(
                    f"{name} row {empty[0]} starts with the pad id {pad}: send each row's tokens "
                    f"first, padding after them, and at least one token ({tok.unk_id} is an unknown word)"
                )
            late = np.flatnonzero((tokens[:, 1:] > tokens[:, :-1]).any(axis=1))
            if late.size:
                raise InvalidInput(
                    f"{name} row {late[0]} has a token after the pad id {pad}: the model reads a row "
                    "up to its first pad, so pad only at the end"
                )

    def pad_values(self) -> dict[str, int]:
        # Token ids of different lengths join a batch right-padded with this.
        return {self.input_name: self.tokenizer.pad_id}

    async def prepare(self, items: Sequence[Any], settings: Settings, pool: Executor) -> Prepared:
        """Tokenise and right-pad: {input: int64 (N, T)}."""
        check_count(len(items), "texts", settings)
        tok = self.tokenizer

        def encode_all() -> np.ndarray:
            return pad_batch([tok.encode_checked(t, settings.max_text_chars) for t in items], tok.pad_id)

        if sum(len(t) for t in items if isinstance(t, str)) < _TEXT_INLINE_CHARS:
            ids = encode_all()
        else:
            ids = await asyncio.get_running_loop().run_in_executor(pool, encode_all)
        return Prepared({self.input_name: ids}, len(items))

    def explain(self, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
        """The tokens read (cut where the model's maximum length cut them), whether the vocabulary knew
        each (directly or by its second chance), and the exact ids the model ran on."""
        tok = self.tokenizer
        rows = []
        for text, row in zip(items, feeds[self.input_name].tolist(), strict=True):
            words, known, used = [], [], 0
            for token in tok.tokens(text):
                if used >= tok.max_length:
                    break
                ids = tok.encode(token).tolist()  # one token may become several ids (a split compound)
                words.append(token)
                known.append(tok.unk_id not in ids)
                used += len(ids)
            while row and row[-1] == tok.pad_id:  # right padding from the batch, not the text
                row.pop()
            rows.append({"input": {"tokens": words, "known": known, "ids": row, "unknown_id": tok.unk_id}})
        return rows

    def from_v2_bytes(self, name: str, values: list[bytes], binary: bool) -> list[Any] | None:
        try:
            return [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise BadRequest(f"input {name!r}: BYTES text must be UTF-8") from None
