"""Image folders and archives: decoding, channels, sizes, checksums, and the decode-once cache."""

import os
import tarfile
import warnings

import numpy as np
import pytest

from mexjax import data
from mexjax.data import _imagefolder
from tests.data.makers import make_archive, write_image_folder, write_sha256sums

SPEC = {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pets"
    return root, write_image_folder(root, SPEC)


def _check(ds, expected, split):
    images, labels = expected[split]
    assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int32
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_names == ("cat", "dog")


@pytest.mark.parametrize("split", ["train", "test"])
def test_extracted_folder_roundtrip(folder, cache_dir, split):
    root, expected = folder
    _check(data.load(root, split, progress=False), expected, split)


@pytest.mark.parametrize("split", ["train", "test"])
def test_archive_roundtrip(folder, tmp_path, cache_dir, split):
    root, expected = folder
    archive = make_archive(root, tmp_path / "pets.tar.gz")
    _check(data.load(archive, split, progress=False), expected, split)


def test_class_index_is_shared_across_splits(tmp_path, cache_dir):
    # 'ant' appears only in train: the test split must still call 'bee' class 1.
    write_image_folder(tmp_path / "f", {"train": {"ant": 1, "bee": 1}, "test": {"bee": 2}})
    test = data.load(tmp_path / "f", "test", progress=False)
    assert test.class_names == ("ant", "bee")
    np.testing.assert_array_equal(test.labels, [1, 1])


def test_grayscale_folder_keeps_one_channel(tmp_path, cache_dir):
    expected = write_image_folder(tmp_path / "g", {"train": {"a": 2}}, mode="L")
    ds = data.load(tmp_path / "g", "train", progress=False)
    assert ds.image_shape == (8, 8, 1)
    np.testing.assert_array_equal(ds.images, expected["train"][0])


def test_mixed_gray_and_colour_becomes_rgb(tmp_path, cache_dir):
    gray = write_image_folder(tmp_path / "m", {"train": {"a": 1}}, mode="L", seed=1)
    write_image_folder(tmp_path / "m", {"train": {"b": 1}}, mode="RGB", seed=2)
    ds = data.load(tmp_path / "m", "train", progress=False)
    assert ds.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(ds.images[0], np.repeat(gray["train"][0][0], 3, axis=-1))


def test_mixed_sizes_is_an_error(tmp_path, cache_dir):
    write_image_folder(tmp_path / "s", {"train": {"a": 1}}, size=(8, 8))
    write_image_folder(tmp_path / "s", {"train": {"b": 1}}, size=(9, 8))
    with pytest.raises(data.DataError, match="mixes image sizes.*8x8.*9x8"):
        data.load(tmp_path / "s", "train", progress=False)


def test_empty_folder_is_an_error(tmp_path, cache_dir):
    (tmp_path / "e" / "train" / "a").mkdir(parents=True)
    (tmp_path / "e" / "train" / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(data.DataError, match="holds no images"):
        data.load(tmp_path / "e", "train", progress=False)


def test_unknown_split_names_the_splits(folder, cache_dir):
    root, _ = folder
    with pytest.raises(data.DataError, match="no split 'val'.*train"):
        data.load(root, "val", progress=False)
    data.load(root, "train", progress=False)  # now cached: the error must come from the cache too
    with pytest.raises(data.DataError, match="no split 'val'"):
        data.load(root, "val", progress=False)


def test_undecodable_image_names_the_file(tmp_path, cache_dir):
    write_image_folder(tmp_path / "c", {"train": {"a": 2}})
    (tmp_path / "c" / "train" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(data.CorruptDataError, match="broken.png"):
        data.load(tmp_path / "c", "train", progress=False)


def test_truncated_archive_is_reported(folder, tmp_path, cache_dir):
    root, _ = folder
    archive = make_archive(root, tmp_path / "pets.tar.gz")
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2])
    write_sha256sums(archive)  # listed as it is now: the decoder itself must notice the cut
    with pytest.raises(data.CorruptDataError, match="truncated or corrupt"):
        data.load(archive, "train", progress=False)


def test_checksum_mismatch_with_sha256sums(folder, tmp_path, cache_dir):
    root, _ = folder
    archive = make_archive(root, tmp_path / "pets.tar.gz")
    write_sha256sums(archive, "0" * 64)
    with pytest.raises(data.CorruptDataError, match="SHA256SUMS"):
        data.load(archive, "train", progress=False)
    write_sha256sums(archive)  # the right checksum: loads
    assert len(data.load(archive, "train", progress=False)) == 5


def test_second_load_uses_the_cache(folder, tmp_path, cache_dir, monkeypatch):
    root, expected = folder
    archive = make_archive(root, tmp_path / "pets.tar.gz")
    data.load(archive, "train", progress=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(_imagefolder, "read_archive", no_decoding)
    ds = data.load(archive, "test", progress=False)
    assert isinstance(ds.images, np.memmap)
    _check(ds, expected, "test")


def test_changed_archive_gets_a_new_cache_entry(folder, tmp_path, cache_dir):
    root, _ = folder
    archive = make_archive(root, tmp_path / "pets.tar.gz")
    assert len(data.load(archive, "train", progress=False)) == 5
    write_image_folder(root, {"train": {"eel": 4}}, seed=5)
    make_archive(root, archive)
    ds = data.load(archive, "train", progress=False)
    assert len(ds) == 9 and ds.class_names == ("cat", "dog", "eel")


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "meta"])
def test_corrupt_cache_is_rebuilt_with_a_warning(folder, tmp_path, cache_dir, damage):
    root, expected = folder
    archive = make_archive(root, tmp_path / "pets.tar.gz")
    data.load(archive, "train", progress=False)
    (entry,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    target = entry / "train.images.npy"
    if damage == "flip_byte":
        blob = bytearray(target.read_bytes())
        blob[-1] ^= 0xFF
        target.write_bytes(bytes(blob))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-10])
    else:
        (entry / "meta.json").write_text("{not json")
    with pytest.warns(data.CacheRebuildWarning, match="rebuilding"):
        ds = data.load(archive, "train", progress=False)
    _check(ds, expected, "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is good: no second warning
        _check(data.load(archive, "train", progress=False), expected, "train")


def test_unwritable_cache_still_loads(folder, tmp_path, monkeypatch):
    root, expected = folder
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MEXJAX_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="could not write the cache"):
        ds = data.load(root, "train", progress=False)
    _check(ds, expected, "train")


def test_archive_without_top_folder(tmp_path, cache_dir):
    expected = write_image_folder(tmp_path / "flat", {"train": {"x": 2, "y": 1}})
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tf:
        for split in os.listdir(tmp_path / "flat"):
            tf.add(tmp_path / "flat" / split, arcname=split)
    write_sha256sums(archive)
    _check_names = data.load(archive, "train", progress=False)
    np.testing.assert_array_equal(_check_names.images, expected["train"][0])
    assert _check_names.class_names == ("x", "y")
