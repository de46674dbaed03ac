"""Partial or unverifiable data is refused: cut archives, missing checksums, empty class folders."""

import dataclasses
import gzip
import tarfile
import warnings

import numpy as np
import pytest

from mexjax import data
from mexjax.data import _load
from tests.data.makers import make_archive, write_image_folder, write_sha256sums

SPEC = {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}}


def _cached_entries(cache_dir):
    return [p for p in cache_dir.iterdir()] if cache_dir.exists() else []


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_archive_cut_at_a_member_boundary_is_an_error(tmp_path, cache_dir, suffix):
    write_image_folder(tmp_path / "pets", SPEC)
    full = make_archive(tmp_path / "pets", tmp_path / "full.tar", checksum=False)
    with tarfile.open(full) as tf:  # members are added in sorted order: test/ comes before train/
        first_train = next(m for m in tf.getmembers() if m.name.startswith("pets/train"))
    blob = full.read_bytes()[: first_train.offset]  # a header boundary: no end-of-archive blocks
    archive = tmp_path / f"pets{suffix}"
    archive.write_bytes(gzip.compress(blob) if suffix == ".tar.gz" else blob)
    write_sha256sums(archive)  # the sum of the cut copy: only the tar structure can tell
    for split in ("test", "train"):
        with pytest.raises(data.CorruptDataError, match=f"pets{suffix}.*end-of-archive.*Copy it again"):
            data.load(archive, split, progress=False)
    assert _cached_entries(cache_dir) == []  # nothing partial is cached


def test_complete_uncompressed_archive_loads(tmp_path, cache_dir):
    expected = write_image_folder(tmp_path / "pets", SPEC)
    archive = make_archive(tmp_path / "pets", tmp_path / "pets.tar")
    np.testing.assert_array_equal(data.load(archive, "test", progress=False).images, expected["test"][0])


def _small_spec(monkeypatch, name="gtsrb", sizes=(("train", 5), ("test", 3)), classes=2):
    spec = dataclasses.replace(_load.ARCHIVES[name], sizes=dict(sizes), num_classes=classes)
    monkeypatch.setitem(_load.ARCHIVES, name, spec)
    return spec


@pytest.mark.parametrize("packed", [False, True])
def test_published_copy_missing_a_split_is_an_error(tmp_path, cache_dir, monkeypatch, packed):
    spec = _small_spec(monkeypatch)
    write_image_folder(tmp_path / "src" / spec.stem, {"train": SPEC["train"]})
    (tmp_path / "src" / spec.stem / "README.txt").write_text("GTSRB, all training and test images")
    data_dir = tmp_path / "src"
    if packed:
        data_dir = tmp_path / "packed"
        data_dir.mkdir()
        make_archive(tmp_path / "src" / spec.stem, data_dir / f"{spec.stem}.tar.gz")
    with pytest.raises(data.CorruptDataError, match=f"{spec.stem}.*split 'test' is missing.*again"):
        data.load("gtsrb", "train", data_dir=data_dir, progress=False)
    assert _cached_entries(cache_dir) == []


def test_published_copy_with_too_few_images_or_classes_is_an_error(tmp_path, cache_dir, monkeypatch):
    spec = _small_spec(monkeypatch)
    write_image_folder(tmp_path / spec.stem, {"train": {"cat": 3, "dog": 1}, "test": SPEC["test"]})
    assert len(data.load("gtsrb", "test", data_dir=tmp_path, progress=False)) == 3  # a stand-in: loads
    (tmp_path / spec.stem / "README.txt").write_text("GTSRB, all training and test images")
    with pytest.raises(data.CorruptDataError, match="train split holds 4 images but gtsrb has 5"):
        data.load("gtsrb", "test", data_dir=tmp_path, progress=False)
    _small_spec(monkeypatch, classes=3)
    write_image_folder(tmp_path / spec.stem, {"train": {"dog": 2}}, seed=1)  # now 5 train images
    with pytest.raises(data.CorruptDataError, match="2 classes but gtsrb has 3"):
        data.load("gtsrb", "test", data_dir=tmp_path, progress=False)
    _small_spec(monkeypatch)
    assert len(data.load("gtsrb", "test", data_dir=tmp_path, progress=False)) == 3  # complete: loads


def test_archive_without_checksum_warns(tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("MEXJAX_REQUIRE_CHECKSUMS", raising=False)
    write_image_folder(tmp_path / "pets", SPEC)
    archive = make_archive(tmp_path / "pets", tmp_path / "pets.tar.gz", checksum=False)
    with pytest.warns(
        UserWarning, match=r"pets\.tar\.gz.*no SHA256SUMS.*sha256sum pets\.tar\.gz >> SHA256SUMS"
    ):
        assert len(data.load(archive, "train", progress=False)) == 5
    write_sha256sums(archive)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listed now: no warning
        data.load(archive, "train", progress=False)


def test_archive_without_checksum_fails_when_checksums_are_required(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("MEXJAX_REQUIRE_CHECKSUMS", "1")
    write_image_folder(tmp_path / "pets", SPEC)
    archive = make_archive(tmp_path / "pets", tmp_path / "pets.tar.gz", checksum=False)
    with pytest.raises(data.DataError, match=r"pets\.tar\.gz has no SHA256SUMS.*MEXJAX_REQUIRE_CHECKSUMS=1"):
        data.load(archive, "train", progress=False)
    make_archive(tmp_path / "pets", tmp_path / "other.tar.gz")  # a SHA256SUMS that lists another archive
    with pytest.raises(data.DataError, match=r"pets\.tar\.gz has no entry in .*SHA256SUMS"):
        data.load(archive, "train", progress=False)
    assert _cached_entries(cache_dir) == []


def test_the_test_suite_requires_checksums():
    import os

    assert os.environ.get("MEXJAX_REQUIRE_CHECKSUMS") == "1"


@pytest.mark.parametrize("packed", [False, True])
def test_empty_class_folder_is_an_error(tmp_path, cache_dir, packed):
    write_image_folder(tmp_path / "pets", {"train": {"ant": 2, "cat": 1, "dog": 1}})
    (tmp_path / "pets" / "train" / "bee").mkdir()  # between ant and cat: labels would shift
    (tmp_path / "pets" / "train" / "bee" / "notes.txt").write_text("images went missing")
    source = make_archive(tmp_path / "pets", tmp_path / "pets.tar.gz") if packed else tmp_path / "pets"
    with pytest.raises(data.DataError, match=r"class folder \S*train/bee holds no images"):
        data.load(source, "train", progress=False)
    assert _cached_entries(cache_dir) == []


def test_hidden_folders_are_not_classes(tmp_path, cache_dir):
    write_image_folder(tmp_path / "pets", {"train": {"ant": 1, "cat": 1}})
    (tmp_path / "pets" / "train" / ".thumbnails").mkdir()
    archive = make_archive(tmp_path / "pets", tmp_path / "pets.tar.gz")
    for source in (tmp_path / "pets", archive):
        assert data.load(source, "train", progress=False).class_names == ("ant", "cat")
