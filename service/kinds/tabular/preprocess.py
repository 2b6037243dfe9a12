"""Feature rows to a tabular model's input: named or ordered values -> float32 (N, F), checked.

model.json's ``preprocessing.tabular`` declares the features (``TabularSpec``): each numeric feature's
range seen in training, each categorical feature's categories; whether a feature is required, and the
default that fills it when it is not. The graph takes one FP32 (N, F) tensor: numeric values raw (the
graph standardises them with the training mean and std) and categorical values as the index of their
category (the graph one-hot encodes them). Training encodes its rows with this same code.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from service.errors import BadRequest, InvalidInput

MISSING = ("", "na", "nan", "null", "none")  # CSV cells that mean "no value" (case-insensitive)


class Feature(BaseModel):
    """One input column."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["numeric", "categorical"] = "numeric"
    min: float | None = None
    """Numeric: the smallest value seen in training (values outside the range are answered, but flagged)."""
    max: float | None = None
    integer: bool = False
    """Numeric: every training value was a whole number."""
    mean: float | None = None
    """Numeric: the training mean (a starting value for forms; the graph holds its own copy)."""
    categories: list[str] | None = None
    """Categorical: the known categories, in the order of their index."""
    required: bool = True
    default: float | str | None = None
    """What fills the feature when a row leaves it out (only when not required)."""
    fallback: str | None = None
    """Categorical: the category an unknown one is read as; None: an unknown category is refused (422)."""


class TabularSpec(BaseModel):
    """model.json's ``preprocessing.tabular``: the features, in the order of the graph's columns."""

    model_config = ConfigDict(extra="forbid")

    features: list[Feature]

    @classmethod
    def from_preprocessing(cls, pre: Mapping[str, Any]) -> TabularSpec:
        return cls.model_validate(pre)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def encode(self, items: Sequence[Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Rows (dicts by name, or lists in feature order) -> (float32 (N, F), one note per row).

        A note lists the row's values outside the training range (``out_of_range``) and the categories
        read as their fallback (``fallbacks``). InvalidInput (422) names the row and the feature for a
        missing, unknown, non-numeric or non-finite value, or an unknown category."""
        out = np.empty((len(items), len(self.features)), dtype=np.float32)
        notes = []
        known = set(self.names)
        for i, item in enumerate(items):
            where = f"row {i}: " if len(items) > 1 else ""
            try:
                out[i], note = self._encode_row(self._named(item, known))
            except InvalidInput as e:
                raise InvalidInput(where + e.message) from None
            notes.append(note)
        return out, notes

    def _named(self, item: Any, known: set[str]) -> Mapping[str, Any]:
        if isinstance(item, Mapping):
            unknown = [k for k in item if k not in known]
            if unknown:
                raise InvalidInput(
                    f"unknown feature {', '.join(repr(str(k)) for k in unknown)}; the features are: "
                    + ", ".join(self.names)
                )
            return item
        if isinstance(item, list | tuple):
            if len(item) != len(self.features):
                raise InvalidInput(
                    f"an instance holds {len(item)} values; the model takes {len(self.features)}, in this "
                    f"order: {', '.join(self.names)}"
                )
            return dict(zip(self.names, item, strict=True))
        raise InvalidInput(
            f"a row must be an object of named features or a list of {len(self.features)} values, "
            f"not {type(item).__name__}"
        )

    def _encode_row(self, row: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        values = np.empty(len(self.features), dtype=np.float32)
        out_of_range: list[dict[str, Any]] = []
        fallbacks: list[dict[str, Any]] = []
        for j, f in enumerate(self.features):
            raw = row.get(f.name)
            if is_missing(raw):
                if f.required or f.default is None:
                    raise InvalidInput(f"feature {f.name!r} is missing (required)")
                raw = f.default
            if f.type == "categorical":
                values[j], fell_back = _category(f, raw)
                if fell_back:
                    fallbacks.append({"feature": f.name, "value": str(raw), "read_as": f.fallback})
                continue
            x = _number(f.name, raw)
            values[j] = x
            if (f.min is not None and x < f.min) or (f.max is not None and x > f.max):
                out_of_range.append({"feature": f.name, "value": x, "min": f.min, "max": f.max})
        note: dict[str, Any] = {"out_of_range": out_of_range}
        if fallbacks:
            note["fallbacks"] = fallbacks
        return values, note

    def model_post_init(self, _context: Any) -> None:
        for f in self.features:
            if f.type == "categorical" and not f.categories:
                raise ValueError(f"categorical feature {f.name!r} declares no categories")
            if f.fallback is not None and f.fallback not in (f.categories or ()):
                raise ValueError(
                    f"feature {f.name!r}: the fallback {f.fallback!r} is not one of its categories"
                )

    def check_matrix(self, x: np.ndarray) -> None:
        """A V2 FP32 (N, F) tensor, as clients send it past ``encode``: finite values, valid category
        indices (InvalidInput naming the column)."""
        for j, f in enumerate(self.features):
            column = x[:, j]
            if not np.isfinite(column).all():
                raise InvalidInput(f"feature {f.name!r} (column {j}) holds NaN or infinite values")
            if f.categories:
                valid = (column >= 0) & (column < len(f.categories)) & (column == np.round(column))
                if not valid.all():
                    raise InvalidInput(
                        f"feature {f.name!r} (column {j}) is categorical: values must be category indices "
                        f"0..{len(f.categories) - 1} ({', '.join(f.categories)})"
                    )


def is_missing(raw: Any) -> bool:
    """None, or a CSV cell that means "no value"."""
    return raw is None or (isinstance(raw, str) and raw.strip().lower() in MISSING)


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidInput(f"feature {name!r} must be a number, got {type(raw).__name__}")
    try:
        x = float(raw)
    except ValueError:
        raise InvalidInput(f"feature {name!r} must be a number, got {str(raw)[:40]!r}") from None
    if not math.isfinite(x):
        raise InvalidInput(f"feature {name!r} must be a finite number, got {raw!r}")
    return x


def _category(f: Feature, raw: Any) -> tuple[float, bool]:
    """The category's index, and whether it was read as the fallback."""
    categories = f.categories or []
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise InvalidInput(f"feature {f.name!r} must be one of its categories, got {type(raw).__name__}")
    text = str(raw).strip()
    if isinstance(raw, float) and raw.is_integer():
        text = str(int(raw))  # 1.0 from a JSON client is category "1"
    if text in categories:
        return float(categories.index(text)), False
    folded = [c.casefold() for c in categories]
    if text.casefold() in folded:
        return float(folded.index(text.casefold())), False
    if f.fallback is not None:
        return float(categories.index(f.fallback)), True
    raise InvalidInput(
        f"feature {f.name!r}: unknown category {text[:40]!r}; the categories are: {', '.join(categories)}"
    )


def parse_csv(data: bytes) -> list[dict[str, str]]:
    """A CSV document with a header row -> one dict per data row (BadRequest when malformed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the CSV is not valid UTF-8") from None
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise BadRequest("the CSV is empty: it needs a header row of feature names, then rows")
        names = [h.strip() for h in header]
        if len(set(names)) != len(names):
            raise BadRequest("the CSV header names a column twice")
        rows = []
        for line, cells in enumerate(reader, start=2):
            if not cells or not any(c.strip() for c in cells):
                continue  # blank lines
            if len(cells) != len(names):
                raise BadRequest(f"CSV line {line} has {len(cells)} cells; the header has {len(names)}")
            rows.append(dict(zip(names, cells, strict=True)))
    except csv.Error as e:
        raise BadRequest(f"malformed CSV: {e}") from None
    return rows
