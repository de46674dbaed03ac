"""FashionMNIST idx, CIFAR-100 pickles and SVHN .mat files written by the tests in official form."""

import gzip
import pickle

import numpy as np
import pytest

from mexjax import data
from mexjax.data import _formats, _load
from tests.data.makers import make_archive, write_cifar100, write_fashion_mnist, write_svhn


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_from_data_dir(tmp_path, split):
    expected = write_fashion_mnist(tmp_path / "fashion-mnist")
    ds = data.load("fashion_mnist", split, data_dir=tmp_path)
    images, labels = expected[split]
    assert ds.image_shape == (28, 28, 1)
    np.testing.assert_array_equal(ds.images[..., 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10


def test_fashion_mnist_aliases(tmp_path):
    write_fashion_mnist(tmp_path / "fashion-mnist")
    for alias in ("FashionMNIST", "fashion-mnist", "fashionmnist"):
        assert len(data.load(alias, "test", data_dir=tmp_path)) == 6


def test_fashion_mnist_truncated_idx(tmp_path):
    folder = tmp_path / "fashion-mnist"
    write_fashion_mnist(folder)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    with pytest.raises(data.CorruptDataError, match="truncated"):
        data.load("fashion_mnist", "test", data_dir=tmp_path)


def test_fashion_mnist_missing_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(_load, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        data.load("fashion_mnist", "train", data_dir=tmp_path)


def test_read_idx_rejects_a_bad_header(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(data.CorruptDataError, match="idx header"):
        _formats.read_idx(path)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("packed", [False, True])
def test_cifar100(tmp_path, split, packed):
    root, expected = write_cifar100(tmp_path / "src")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if packed:
        make_archive(root, data_dir / "cifar-100-python.tar.gz")  # listed in SHA256SUMS beside it
    else:
        root.rename(data_dir / "cifar-100-python")
    ds = data.load("cifar100", split, data_dir=data_dir)
    images, labels = expected[split]
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.num_classes == 100 and ds.class_names[7] == "class07"


def test_cifar100_archive_is_checked_against_its_checksum(tmp_path, monkeypatch):
    root, _ = write_cifar100(tmp_path / "src")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = make_archive(root, data_dir / "cifar-100-python.tar.gz")
    sums = data_dir / "SHA256SUMS"
    listed = sums.read_text()
    sums.write_text("0" * 64 + listed[64:])  # another archive's checksum
    with pytest.raises(data.CorruptDataError, match="corrupt or truncated"):
        data.load("cifar100", "test", data_dir=data_dir)
    sums.unlink()
    with pytest.raises(data.DataError, match="has no SHA256SUMS beside it"):  # MEXJAX_REQUIRE_CHECKSUMS=1
        data.load("cifar100", "test", data_dir=data_dir)
    monkeypatch.delenv("MEXJAX_REQUIRE_CHECKSUMS")
    with pytest.warns(data.MissingChecksumWarning, match="cannot be checked"):
        assert len(data.load("cifar100", "test", data_dir=data_dir)) == 5
    assert archive.is_file()


def test_cifar100_pickle_that_runs_code_is_refused(tmp_path):
    root, _ = write_cifar100(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (root / "train").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(data.CorruptDataError, match=r"refusing to load \w+\.print"):
        data.load("cifar100", "train", data_dir=tmp_path)


def test_cifar100_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="cifar-100-python.tar.gz"):
        data.load("cifar100", "train", data_dir=tmp_path)


@pytest.mark.parametrize("nested", [False, True])
def test_svhn(tmp_path, nested):
    folder = tmp_path / "svhn" if nested else tmp_path
    images, labels = write_svhn(folder, "test")
    ds = data.load("svhn", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.max() <= 9 and ds.class_names == tuple("0123456789")


def test_svhn_corrupt_file(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 but then nothing")
    with pytest.raises(data.CorruptDataError, match="train_32x32.mat"):
        data.load("svhn", "train", data_dir=tmp_path)


def test_svhn_missing(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="extra_32x32.mat"):
        data.load("svhn", "extra", data_dir=tmp_path)
