"""Tabular rows: JSON ``{"rows": [{named features}]}`` or ``{"instances": [[ordered values]]}``, CSV
(``text/csv`` with a header row, raw or as a multipart file), V2 FP32 (N, F) tensors.

model.json's ``preprocessing.tabular`` declares the features; service/kinds/tabular/preprocess.py encodes and
checks rows (training encodes with the same code). Values outside the training range are answered and
flagged in each prediction's ``out_of_range``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from service.config import Settings
from service.errors import LoadError
from service.kinds import register
from service.kinds.base import InputKind, Prepared, check_count, single_input
from service.kinds.tabular.preprocess import TabularSpec, parse_csv
from service.runtime import Feeds, OnnxModel

if TYPE_CHECKING:
    from service.repository.model_files import ModelMeta


@register
class TabularKind(InputKind):
    name = "tabular"
    noun = "row"
    media_types = frozenset({"text/csv", "application/csv"})
    file_suffixes = frozenset({".csv"})
    json_fields: ClassVar[dict[str, bool]] = {"row": False, "rows": True, "instances": True}
    accepts = 'JSON {"row"|"rows": named features} or {"instances": [[values]]}, a text/csv body or file'

    def __init__(self, spec: TabularSpec, input_name: str) -> None:
        self.spec = spec
        self.input_name = input_name

    @classmethod
    def from_body(cls, data: bytes, media_type: str) -> list[Any]:
        return list(parse_csv(data))

    @classmethod
    def load(cls, meta: ModelMeta, model_dir: Path, model: OnnxModel) -> Self:
        spec = TabularSpec.from_preprocessing(meta.section("tabular"))
        graph_input = single_input(model, "tabular")
        expected = (-1, len(spec.features))
        if graph_input.datatype != "FP32" or graph_input.shape != expected:
            raise LoadError(
                f"tabular model input must be FP32 {list(expected)} ({len(spec.features)} features), graph has "
                f"{graph_input.datatype} {list(graph_input.shape)}"
            )
        return cls(spec, graph_input.name)

    async def prepare(self, items: Sequence[Any], settings: Settings, pool: Executor) -> Prepared:
        """Encode and check every row (cheap: no thread): {input: float32 (N, F)}, a note per row."""
        check_count(len(items), "rows", settings)
        x, notes = self.spec.encode(items)
        return Prepared({self.input_name: x}, len(items), notes)

    def check_feeds(self, feeds: Feeds) -> None:
        self.spec.check_matrix(feeds[self.input_name])

    def describe(self) -> dict[str, Any]:
        """The feature list (names, types, ranges, categories, required, defaults): enough for a form."""
        return {
            "features": [f.model_dump(exclude_none=True) for f in self.spec.features]
        }  # numeric: no categories

    def explain(self, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
        """Each row as the model took it: every feature's value (defaults filled, categories as given)."""
        rows = []
        for values in feeds[self.input_name].tolist():
            seen = {
                f.name: f.categories[int(v)] if f.categories else v
                for f, v in zip(self.spec.features, values, strict=True)
            }
            rows.append({"input": seen})
        return rows
