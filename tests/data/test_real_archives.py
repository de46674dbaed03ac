"""The real datasets of ../shared/data and the FashionMNIST Debian package.

Each archive is decoded once per test session (about 30 s on 2 cores in all), then memory-mapped.
"""

import hashlib

import numpy as np
import pytest

from mexjax import data

pytestmark = pytest.mark.shared_data

EXPECTED = {
    # name: {split: (count, per-class count or None)}, image shape, classes
    "cifar10": ({"train": (50_000, 5_000), "test": (10_000, 1_000)}, (32, 32, 3), 10),
    "gtsrb": ({"train": (39_209, None), "test": (12_630, None)}, (32, 32, 3), 43),
    "tinyimagenet": ({"train": (20_000, 100), "val": (10_000, 50)}, (64, 64, 3), 200),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_archive_contents(shared_data, name):
    splits, shape, classes = EXPECTED[name]
    for split, (count, per_class) in splits.items():
        ds = data.load(name, split, data_dir=shared_data, progress=False)
        assert len(ds) == count and ds.image_shape == shape, (name, split)
        assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int32
        assert ds.num_classes == classes and ds.labels.min() == 0 and ds.labels.max() == classes - 1
        counts = np.bincount(ds.labels, minlength=classes)
        if per_class is not None:
            assert np.all(counts == per_class), (name, split, counts)
        else:
            assert np.all(counts > 0)
        # real pixels, not a blank decode: every image has some contrast
        sample = np.asarray(ds.images[:: max(1, count // 200)])
        assert np.all(sample.reshape(len(sample), -1).std(axis=1) > 1.0)


def test_cifar10_class_names_in_the_usual_order(shared_data):
    ds = data.load("cifar10", "test", data_dir=shared_data, progress=False)
    assert ds.class_names == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    assert data.load("gtsrb", "test", data_dir=shared_data, progress=False).class_names[42] == "00042"


def test_tinyimagenet_grayscale_images_became_rgb(shared_data):
    ds = data.load("tinyimagenet", "val", data_dir=shared_data, progress=False)
    gray = np.all(ds.images[..., 0] == ds.images[..., 2], axis=(1, 2)) & np.all(
        ds.images[..., 0] == ds.images[..., 1], axis=(1, 2)
    )
    assert 0 < gray.sum() < len(ds) // 10  # a few originals were grayscale, now 3 equal channels


def test_archive_checksums_match_sha256sums(shared_data):
    listed = dict(line.split()[::-1] for line in (shared_data / "SHA256SUMS").read_text().splitlines())
    assert set(listed) == {"cifar10-jpeg75.tar.gz", "gtsrb32.tar.gz", "tinyimagenet200-20k.tar.gz"}
    for archive, digest in listed.items():
        assert hashlib.sha256((shared_data / archive).read_bytes()).hexdigest() == digest


def test_second_load_is_a_memory_map(shared_data):
    data.load("cifar10", "train", data_dir=shared_data, progress=False)
    again = data.load("cifar10", "train", data_dir=shared_data, progress=False)
    assert isinstance(again.images, np.memmap)


def test_default_lookup_finds_shared_data(shared_data):
    assert shared_data.resolve() in [p.resolve() for p in data.data_dirs()]
    assert len(data.load("cifar10", "test", progress=False)) == 10_000


@pytest.mark.parametrize(("split", "count"), [("train", 60_000), ("test", 10_000)])
def test_fashion_mnist_debian_package(split, count):
    ds = data.load("fashion_mnist", split)
    assert len(ds) == count and ds.image_shape == (28, 28, 1)
    assert np.all(np.bincount(ds.labels) == count // 10)
