"""Tabular models over HTTP against a real server: letters (16 numeric features) and churn (numeric and
categorical), through /predict (named rows, ordered instances, CSV), V2 FP32 tensors, and /models."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, Server

HELD_OUT = ROOT / "tests" / "data"


def held_out(name: str, n: int) -> tuple[list[dict[str, str]], list[str], str]:
    """The first n committed held-out rows (features only), their labels, and the label column."""
    label = {"letters": "lettr", "churn": "churn"}[name]
    with (HELD_OUT / f"{name}-test.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [{k: v for k, v in r.items() if k != label} for r in rows], [r[label] for r in rows], label


def test_models_lists_each_tabular_models_features(client: httpx.Client) -> None:
    by_name = {m["name"]: m for m in client.get("/models").json()["models"]}
    letters = by_name["letters"]
    assert letters["input_kind"] == "tabular"
    assert [f["name"] for f in letters["features"]][:3] == ["x-box", "y-box", "width"]
    assert all(f["type"] == "numeric" and 0 <= f["min"] < f["max"] <= 15 for f in letters["features"])
    assert all(f["required"] and f["integer"] and "categories" not in f for f in letters["features"])
    churn = {f["name"]: f for f in by_name["churn"]["features"]}
    assert churn["contract"]["categories"] == ["Month-to-month", "One year", "Two year"]
    assert churn["total_charges"]["required"] is False and "default" in churn["total_charges"]
    meta = client.get("/v2/models/letters").json()
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 16]}]
    assert len(meta["parameters"]["features"]) == 16


def test_named_rows_ordered_instances_and_csv_agree(client: httpx.Client) -> None:
    rows, labels, _ = held_out("letters", 20)
    named = client.post("/models/letters/predict", json={"rows": rows})
    assert named.status_code == 200, named.text
    got = [p["label"] for p in named.json()["predictions"]]
    assert sum(g == t for g, t in zip(got, labels, strict=True)) >= 18
    names = list(rows[0])
    ordered = client.post(
        "/models/letters/predict", json={"instances": [[float(r[k]) for k in names] for r in rows]}
    )
    assert [p["label"] for p in ordered.json()["predictions"]] == got
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    raw = client.post(
        "/models/letters/predict", content=text.getvalue(), headers={"content-type": "text/csv"}
    )
    assert [p["label"] for p in raw.json()["predictions"]] == got
    upload = client.post(
        "/models/letters/predict", files={"file": ("rows.csv", text.getvalue().encode(), "text/csv")}
    )
    assert [p["label"] for p in upload.json()["predictions"]] == got
    one = client.post("/models/letters/predict?top_k=3", json={"row": rows[0]}).json()["predictions"]
    assert len(one) == 1 and one[0]["label"] == got[0] and len(one[0]["top_k"]) == 3
    assert one[0]["out_of_range"] == []


def test_out_of_range_values_are_answered_and_flagged(client: httpx.Client) -> None:
    rows, _, _ = held_out("letters", 1)
    row = {**rows[0], "x-box": 40, "onpix": -3}
    r = client.post("/models/letters/predict", json={"rows": [row]})
    assert r.status_code == 200, r.text
    flagged = r.json()["predictions"][0]["out_of_range"]
    assert flagged == [
        {"feature": "x-box", "value": 40.0, "min": 0.0, "max": 15.0},
        {"feature": "onpix", "value": -3.0, "min": 0.0, "max": 15.0},
    ]


def test_churn_takes_categories_and_fills_the_optional_feature(client: httpx.Client) -> None:
    rows, labels, _ = held_out("churn", 200)
    r = client.post("/models/churn/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    got = [p["label"] for p in r.json()["predictions"]]
    assert sum(g == t for g, t in zip(got, labels, strict=True)) / len(got) > 0.7
    without = {k: v for k, v in rows[0].items() if k != "total_charges"}
    assert client.post("/models/churn/predict", json={"row": without}).status_code == 200
    seen = client.post("/models/churn/predict?explain=1", json={"row": rows[0]}).json()["predictions"][0]
    assert seen["input"]["contract"] == rows[0]["contract"]


@pytest.mark.parametrize(
    ("model", "change", "status", "needle"),
    [
        ("letters", {"drop": "x-box"}, 422, "feature 'x-box' is missing"),
        ("letters", {"set": ("height", 3)}, 422, "unknown feature 'height'"),
        ("letters", {"set": ("onpix", "many")}, 422, "feature 'onpix' must be a number"),
        ("letters", {"set": ("onpix", None)}, 422, "feature 'onpix' is missing"),
        ("letters", {"set": ("onpix", "NaN")}, 422, "feature 'onpix' is missing"),
        ("letters", {"set": ("onpix", "Infinity")}, 422, "finite"),
        ("letters", {"set": ("onpix", [1])}, 422, "must be a number"),
        ("churn", {"set": ("contract", "Three year")}, 422, "unknown category 'Three year'"),
        ("churn", {"set": ("payment_method", 7)}, 422, "unknown category '7'"),
    ],
)
def test_bad_rows_answer_422_naming_the_feature(
    client: httpx.Client, model: str, change: dict[str, object], status: int, needle: str
) -> None:
    rows, _, _ = held_out(model, 2)
    row: dict[str, object] = dict(rows[1])
    if "drop" in change:
        del row[str(change["drop"])]
    else:
        key, value = change["set"]  # type: ignore[misc]
        row[key] = value
    r = client.post(f"/models/{model}/predict", json={"rows": [rows[0], row]})
    assert r.status_code == status, r.text
    assert r.json()["error"].startswith("row 1: ") and needle in r.json()["error"]


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"json": {"instances": [[1, 2, 3]]}}, 422, "holds 3 values; the model takes 16"),
        ({"json": {"instances": "x"}}, 400, "must be a list"),
        ({"json": {"rows": []}}, 400, "no rows"),
        ({"json": {"rows": [5]}}, 422, "must be an object of named features or a list of 16 values"),
        ({"content": b"", "headers": {"content-type": "text/csv"}}, 400, "CSV is empty"),
        ({"content": b"x-box,y-box\n1\n", "headers": {"content-type": "text/csv"}}, 400, "line 2"),
        (
            {"content": b"x-box\n1\n", "headers": {"content-type": "text/csv"}},
            422,
            "feature 'y-box' is missing",
        ),
        ({"content": b"\xff\xfe,\n", "headers": {"content-type": "text/csv"}}, 400, "UTF-8"),
        ({"json": {"text": "hello"}}, 415, "takes rows; this request sent texts"),
        ({"json": {"rows": [{"x-box": 1}] * 300}}, 413, "limit"),
    ],
)
def test_malformed_tabular_requests_answer_4xx(
    client: httpx.Client, kwargs: dict[str, object], status: int, needle: str
) -> None:
    r = client.post("/models/letters/predict", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert needle in r.json()["error"], r.text


def test_v2_takes_fp32_rows_and_refuses_nan(client: httpx.Client) -> None:
    rows, labels, _ = held_out("letters", 5)
    data = [float(v) for r in rows for v in r.values()]
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [5, 16], "data": data}]}
    r = client.post("/v2/models/letters/infer", json=body)
    assert r.status_code == 200, r.text
    probs = {o["name"]: o for o in r.json()["outputs"]}["probabilities"]
    assert probs["shape"] == [5, 26]
    best = np.asarray(probs["data"]).reshape(5, 26).argmax(1)
    letters = client.get("/v2/models/letters").json()["parameters"]["labels"]
    assert sum(letters[i] == t for i, t in zip(best, labels, strict=True)) >= 4
    # NaN cannot be written in JSON: the binary extension carries it.
    nan = np.full((1, 16), np.nan, dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [1, 16],
                    "parameters": {"binary_data_size": 64},
                }
            ]
        }
    ).encode()
    r = client.post(
        "/v2/models/letters/infer",
        content=header + nan,
        headers={
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        },
    )
    assert r.status_code == 422 and "'x-box' (column 0) holds NaN" in r.json()["error"], r.text
    wide = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 15], "data": data[:15]}]}
    assert client.post("/v2/models/letters/infer", json=wide).status_code == 422


def test_v2_refuses_an_invalid_category_index(client: httpx.Client) -> None:
    meta = client.get("/v2/models/churn").json()
    features = meta["parameters"]["features"]
    values = [0.0] * len(features)
    contract = [f["name"] for f in features].index("contract")
    values[contract] = 3.0  # three categories: 0..2
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, len(values)], "data": values}]}
    r = client.post("/v2/models/churn/infer", json=body)
    assert r.status_code == 422 and "'contract'" in r.json()["error"] and "0..2" in r.json()["error"], r.text


def test_client_sdk_and_cli_take_rows_and_csv(server: Server, tmp_path: Path) -> None:
    from service.cli import main
    from service.client import InvalidInputError, ModelServeClient

    rows, labels, label = held_out("letters", 6)
    with ModelServeClient(server.url) as ms:
        named = ms.predict_rows("letters", rows)
        assert sum(p.label == t for p, t in zip(named, labels, strict=True)) >= 5
        ordered = ms.predict_rows("letters", [[float(v) for v in r.values()] for r in rows])
        assert [p.label for p in ordered] == [p.label for p in named]
        assert named[0].notes == {"out_of_range": []}
        letters = next(m for m in ms.models() if m.name == "letters")
        assert letters.features[0]["name"] == "x-box"
        path = tmp_path / "rows.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        assert [p.label for p in ms.predict_csv("letters", path)] == [p.label for p in named]
        assert [p.label for p in ms.predict_csv("letters", path.read_text())] == [p.label for p in named]
        with pytest.raises(InvalidInputError, match="unknown feature 'lettr'"):
            ms.predict_rows("letters", [{**rows[0], label: "A"}])
    out = tmp_path / "out.json"
    with out.open("w") as f, contextlib.redirect_stdout(f):
        assert main(["predict", "--url", server.url, "--model", "letters", "--json", str(path)]) == 0
    answers = json.loads(out.read_text())
    assert [a["label"] for a in answers] == [p.label for p in named]
    assert answers[0]["input"] == f"{path} row 1" and answers[0]["out_of_range"] == []
    row = json.dumps({**rows[0], "x-box": 99})
    with out.open("w") as f, contextlib.redirect_stdout(f):
        assert main(["predict", "--url", server.url, "--model", "letters", "--row", row]) == 0
    assert "outside the training range: x-box" in out.read_text()
