"""Where datasets are looked for, and the errors when they are not there."""

import sys
import types

import numpy as np
import pytest

from mexjax import data
from mexjax.data import _load, _locate, _tfds
from tests.data.makers import make_archive, write_image_folder


def test_wrong_data_dir_is_an_error(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="is not a directory"):
        data.load("cifar10", "train", data_dir=tmp_path / "missing")


def test_wrong_env_data_dir_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MEXJAX_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(data.DatasetNotFoundError, match="MEXJAX_DATA_DIR"):
        data.data_dirs()


def test_lookup_order(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setattr(_locate, "REPO_ROOT", repo)
    assert data.data_dirs() == [repo / "data", tmp_path / "shared" / "data"]
    monkeypatch.setenv("MEXJAX_DATA_DIR", str(env_dir))
    assert data.data_dirs() == [env_dir, repo / "data", tmp_path / "shared" / "data"]
    assert data.data_dirs(tmp_path) == [tmp_path]  # an explicit argument is the only place


def test_archive_found_in_env_dir_and_extracted_folder(tmp_path, monkeypatch, cache_dir):
    expected = write_image_folder(tmp_path / "src" / "gtsrb32", {"train": {"00000": 2, "00001": 1}})
    monkeypatch.setenv("MEXJAX_DATA_DIR", str(tmp_path / "src"))
    extracted = data.load("gtsrb", "train", progress=False)  # extracted folder
    np.testing.assert_array_equal(extracted.images, expected["train"][0])
    packed_dir = tmp_path / "packed"
    packed_dir.mkdir()
    make_archive(tmp_path / "src" / "gtsrb32", packed_dir / "gtsrb32.tar.gz")
    packed = data.load("GTSRB", "train", data_dir=packed_dir, progress=False)
    np.testing.assert_array_equal(packed.images, expected["train"][0])
    assert packed.name == "gtsrb" and packed.class_names == ("00000", "00001")


def test_named_dataset_missing_lists_places(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=r"tinyimagenet200-20k\.tar\.gz.*" + str(tmp_path)):
        data.load("tinyimagenet", "val", data_dir=tmp_path)


def test_unknown_split_of_named_dataset():
    with pytest.raises(data.DataError, match="tinyimagenet has no split 'test'; its splits are train, val"):
        data.load("tinyimagenet", "test")


def test_unknown_name(monkeypatch):
    monkeypatch.setattr(_tfds, "available", lambda: False)
    with pytest.raises(data.DataError, match="unknown dataset 'imagenet21k'.*cifar10.*mexjax\\[tfds\\]"):
        data.load("imagenet21k", "train")


def test_bad_argument_types():
    with pytest.raises(TypeError, match="split must be a string"):
        data.load("cifar10", 0)
    with pytest.raises(TypeError, match="dataset name"):
        data.load(10, "train")


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MEXJAX_CACHE_DIR", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c"


# --- tensorflow-datasets adapter, against a stand-in module (tfds itself is an optional extra) ---


def _fake_tfds(tmp_path, prepared=True):
    module = types.ModuleType("tensorflow_datasets")
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    labels = np.array([1, 0], np.int64)

    class Builder:
        def __init__(self, name, data_dir):
            if name != "toy":
                raise ValueError(f"unknown {name}")
            self.data_dir = str(tmp_path / "toy" if prepared else tmp_path / "absent")
            label = types.SimpleNamespace(names=["no", "yes"])
            self.info = types.SimpleNamespace(splits={"train": None}, features={"label": label})

        def as_dataset(self, split, batch_size, as_supervised):
            assert batch_size == -1 and as_supervised
            return (images, labels)

    (tmp_path / "toy").mkdir(exist_ok=True)
    module.builder = Builder
    module.as_numpy = lambda x: x
    return module, images, labels


def test_tfds_adapter(tmp_path, monkeypatch):
    module, images, labels = _fake_tfds(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    monkeypatch.setattr(_tfds, "available", lambda: True)
    ds = data.load("tfds:toy", "train", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.images[..., 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_names == ("no", "yes") and ds.labels.dtype == np.int32
    assert len(data.load("toy", "train", data_dir=tmp_path)) == 2  # plain name falls through to tfds
    with pytest.raises(data.DataError, match="no split 'test'"):
        data.load("tfds:toy", "test", data_dir=tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match="does not know 'other'"):
        data.load("tfds:other", "train", data_dir=tmp_path)


def test_tfds_not_prepared(tmp_path, monkeypatch):
    module, *_ = _fake_tfds(tmp_path, prepared=False)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    monkeypatch.setattr(_tfds, "available", lambda: True)
    with pytest.raises(data.DatasetNotFoundError, match="not prepared.*tfds build toy"):
        data.load("tfds:toy", "train", data_dir=tmp_path)


def test_tfds_not_installed(monkeypatch):
    monkeypatch.setattr(_tfds, "available", lambda: False)
    with pytest.raises(data.DataError, match="pip install 'mexjax\\[tfds\\]'"):
        data.load("tfds:mnist", "train")


def test_names_are_complete():
    assert set(data.NAMES) == {"cifar10", "gtsrb", "tinyimagenet", "fashion_mnist", "cifar100", "svhn"}
    assert set(_load.ARCHIVES) | set(_load.FORMAT_SPLITS) == set(data.NAMES)
