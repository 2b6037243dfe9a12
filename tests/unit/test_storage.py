"""service/repository/download.py and s3.py without a server: the URI forms one by one (KServe's habit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.repository.download import is_uri, open_storage
from service.repository.s3 import S3Storage, parse_s3_uri
from service.repository.storage import LocalFolder, StorageError


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://models", "models", ""),
        ("s3://models/", "models", ""),
        ("s3://models/repo", "models", "repo/"),
        ("s3://models/team/repo/", "models", "team/repo/"),
        ("s3://my.bucket-1//repo//", "my.bucket-1", "repo/"),
    ],
)
def test_s3_uris_split_into_bucket_and_prefix(uri: str, bucket: str, prefix: str) -> None:
    assert parse_s3_uri(uri) == (bucket, prefix)


@pytest.mark.parametrize("uri", ["s3://", "s3:///repo", "s3://UPPER/x", "s3://a/x", "s3://under_score"])
def test_a_bad_bucket_is_refused_in_words_that_do_not_repeat_it(uri: str) -> None:
    with pytest.raises(StorageError, match="names no valid bucket") as caught:
        parse_s3_uri(uri)
    assert uri[5:] not in str(caught.value) or not uri[5:]


@pytest.mark.parametrize(
    ("location", "uri"),
    [("models", False), ("/srv/models", False), ("./s3:/x", False), ("s3://b/p", True), ("gs://b", True)],
)
def test_folders_and_uris_are_told_apart(location: str, uri: bool) -> None:
    assert is_uri(location) is uri


def test_a_folder_is_loaded_in_place(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    assert isinstance(storage, LocalFolder) and storage.root == tmp_path and not storage.atomic


def test_an_unsupported_scheme_is_refused_by_name() -> None:
    with pytest.raises(StorageError, match="unsupported model storage scheme 'gs'"):
        open_storage("gs://bucket/models")


def test_an_s3_uri_caches_in_its_own_folder_without_contacting_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached: nothing is listed here
    a = open_storage("s3://bucket-a/repo", tmp_path)
    b = open_storage("s3://bucket-b/repo", tmp_path)
    assert isinstance(a, S3Storage) and a.atomic
    assert a.root.parent == tmp_path and a.root.is_dir() and a.root != b.root
    assert "bucket-a" not in a.describe() and "bucket-a" not in str(a.root)


def test_settings_keep_an_s3_uri_whole_and_take_a_path_as_a_folder(tmp_path: Path) -> None:
    assert Settings(models_dir="s3://bucket/a/b").models_dir == "s3://bucket/a/b"
    assert Settings(models_dir=tmp_path).models_dir == str(tmp_path)  # type: ignore[arg-type]


def test_a_version_folder_is_named_by_its_number_without_leading_zeros(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """'01' beside '1' were both version 1 (which one loaded?), and '01' alone was looked for as '1'. Only
    a number as written counts; another folder of digits is warned about once, not taken."""
    for name in ("1", "01", "2", "007", "10", "x3", "\u0663"):  # the last: an Arabic-Indic three
        (tmp_path / "m" / name).mkdir(parents=True)
    (tmp_path / "m" / "3").write_text("a file, not a folder")
    folder = LocalFolder(tmp_path)
    with caplog.at_level("WARNING", logger="service.repository.storage"):
        assert folder.version_numbers("m") == [1, 2, 10]
        assert folder.version_numbers("m") == [1, 2, 10]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3 and all("not read as a version" in w for w in warned)
    assert {w.split("'")[1] for w in warned} == {"01", "007", "\u0663"}
