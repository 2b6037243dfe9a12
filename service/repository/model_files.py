"""A model's files, typed: model.json (what training/export.py writes and the repository reads, one schema
for both) and config.json (the serving knobs an operator tunes without retraining).

models/<name>/<version>/model.json describes the graph beside it: the task, the input kind (a name in
the service/kinds registry), the input and output tensors, the labels, each kind's preprocessing section
(read by that kind: ``ImageSpec.from_preprocessing``, ``Tokenizer.from_preprocessing``, ...), and the
export and training reports. A version without model.json serves as a tensor model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from service.errors import LoadError

FORMAT = 1
FILENAME = "model.json"


class TensorDecl(BaseModel):
    """A graph input or output as model.json declares it (V2 datatype, -1 for a dynamic axis)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    datatype: str
    shape: list[int]


class ExportInfo(BaseModel):
    """How the graph was exported and checked."""

    model_config = ConfigDict(extra="forbid")

    opset: int | None = None
    parity_max_abs_diff: float | None = None
    torch: str | None = None
    quantization: dict[str, Any] | None = None


class ModelMeta(BaseModel):
    """models/<name>/<version>/model.json."""

    model_config = ConfigDict(extra="forbid", title="model.json")

    format: int = FORMAT
    name: str | None = None
    version: int | None = None
    task: str = "classification"
    input_kind: str = "tensor"
    """A registered kind (service/kinds): image, text, tabular, tensor, ..."""
    inputs: list[TensorDecl] = []
    outputs: list[TensorDecl] = []
    scores_output: str | None = None
    """The output holding per-class probabilities (default: the graph's first output)."""
    labels: list[str] = []
    preprocessing: dict[str, dict[str, Any]] = {}
    """One section per kind, keyed by the kind's name; only that kind reads it."""
    export: ExportInfo | None = None
    training: dict[str, Any] = {}
    """The training report: data, sizes, history, test metrics."""

    def section(self, kind: str) -> dict[str, Any]:
        """The kind's preprocessing section; LoadError when model.json has none."""
        try:
            return self.preprocessing[kind]
        except KeyError:
            raise LoadError(f"model.json has no preprocessing.{kind} section for its {kind} input") from None

    @classmethod
    def read(cls, version_dir: Path) -> ModelMeta:
        """The version's model.json, or the tensor-model default when there is none."""
        path = version_dir / FILENAME
        return cls.model_validate_json(path.read_bytes()) if path.is_file() else cls()

    def write(self, version_dir: Path) -> Path:
        path = version_dir / FILENAME
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


class ModelConfig(BaseModel):
    """models/<name>/config.json: what an operator tunes without retraining; unset knobs take Settings'."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    max_queue_size: int | None = None
    timeout_s: float | None = None
    instances: int | None = None
    version_policy: Literal["latest", "all"] | dict[Literal["latest", "specific"], int | list[int]] = "latest"
    """"latest" (the highest version), "all", {"latest": N} or {"specific": [1, 3]}."""

    def select(self, versions: list[int]) -> list[int]:
        versions = sorted(versions)
        policy = self.version_policy
        if policy == "all":
            return versions
        if policy == "latest":
            return versions[-1:]
        if "specific" in policy:
            wanted = policy["specific"]
            return [v for v in versions if v in (wanted if isinstance(wanted, list) else [wanted])]
        n = policy["latest"]
        return versions[-int(n if isinstance(n, int) else 1) :]


def read_config(model_dir: Path) -> ModelConfig:
    path = model_dir / "config.json"
    if not path.is_file():
        return ModelConfig()
    try:
        return ModelConfig.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise LoadError(f"config.json is not JSON (line {e.lineno}, column {e.colno})") from None
    except ValidationError as e:
        raise LoadError(validation_reason(e).replace(e.title, "config.json", 1)) from None


def validation_reason(error: ValidationError) -> str:
    """A pydantic error in our own words: the fields and what is wrong, never the input."""
    fields = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    )
    return f"{error.title} is invalid: {fields}"
