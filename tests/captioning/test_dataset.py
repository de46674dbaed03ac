"""CaptionSet validation, take, and the deterministic disjoint split."""

import numpy as np
import pytest

from mexjax.captioning import CaptionSet, split_captions


def _cset(n, size=4):
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, size, size, 3), np.uint8)
    return CaptionSet(
        images, [[f"caption {i}", f"other {i}"] for i in range(n)], tuple(f"{i}.jpg" for i in range(n))
    )


def _rows(cset):
    return cset.images[:, 0, 0, 0].tolist()


@pytest.mark.parametrize(
    ("n", "sizes"), [(10, (8, 1, 1)), (7, (6, 0, 1)), (101, (81, 10, 10)), (0, (0, 0, 0))]
)
def test_split_sizes_disjoint_and_complete(n, sizes):
    cset = _cset(n)
    parts = split_captions(cset, (0.8, 0.1, 0.1), seed=0)
    assert tuple(len(p) for p in parts) == sizes
    assert [p.split for p in parts] == ["train", "val", "test"]
    rows = [r for p in parts for r in _rows(p)]
    assert sorted(rows) == list(range(n))  # disjoint, and together everything
    for p in parts:  # captions and ids travel with their image
        for row, refs, image_id in zip(_rows(p), p.captions, p.image_ids, strict=True):
            assert refs == [f"caption {row}", f"other {row}"] and image_id == f"{row}.jpg"


def test_split_is_deterministic_per_seed_and_shuffles():
    cset = _cset(50)
    a = [_rows(p) for p in split_captions(cset, seed=4)]
    assert a == [_rows(p) for p in split_captions(cset, seed=4)]
    assert a == [_rows(p) for p in cset.splits(seed=4)]
    assert a != [_rows(p) for p in split_captions(cset, seed=5)]
    assert a[0] != sorted(a[0])
    two = split_captions(cset, (0.5, 0.5), seed=0)
    assert [len(p) for p in two] == [25, 25] and [p.split for p in two] == ["part0", "part1"]


@pytest.mark.parametrize(
    ("fractions", "error", "match"),
    [
        ((0.5, 0.4), ValueError, "sum to 1"),
        ((1.2, -0.2), ValueError, ">= 0"),
        ((), TypeError, "non-empty sequence"),
        ("0.8", TypeError, "non-empty sequence"),
        ((0.5, float("nan"), 0.5), ValueError, "finite"),
    ],
)
def test_split_rejects_bad_fractions(fractions, error, match):
    with pytest.raises(error, match=match):
        split_captions(_cset(4), fractions)


def test_split_rejects_other_inputs():
    with pytest.raises(TypeError, match="needs a CaptionSet"):
        split_captions([1, 2, 3])
    with pytest.raises(ValueError, match="seed"):
        split_captions(_cset(3), seed=-1)


def test_take_and_repr():
    cset = _cset(5)
    sub = cset.take([4, 0])
    assert _rows(sub) == [4, 0] and sub.captions[0][0] == "caption 4" and sub.image_ids == ("4.jpg", "0.jpg")
    assert len(cset.take([])) == 0 and cset.image_shape == (4, 4, 3)
    assert "5 images (4, 4, 3) uint8, 10 captions" in repr(cset)
    with pytest.raises(IndexError):
        cset.take([5])
    with pytest.raises(TypeError, match="integer indices"):
        cset.take([0.5])


@pytest.mark.parametrize(
    ("images", "captions", "ids", "error", "match"),
    [
        (np.zeros((2, 4, 4, 3), np.float32), [["a"], ["b"]], (), TypeError, "uint8"),
        (np.zeros((2, 4, 4), np.uint8), [["a"], ["b"]], (), TypeError, r"\[N, H, W, 3\]"),
        (np.zeros((2, 4, 4, 1), np.uint8), [["a"], ["b"]], (), TypeError, r"\[N, H, W, 3\]"),
        (
            np.zeros((2, 4, 4, 3), np.uint8),
            ["a", "b"],
            (),
            TypeError,
            r"wrap a single caption as \[caption\]",
        ),
        (np.zeros((2, 4, 4, 3), np.uint8), [["a"], []], (), ValueError, "needs a caption"),
        (np.zeros((2, 4, 4, 3), np.uint8), [["a"], [3]], (), TypeError, "must hold strings"),
        (np.zeros((2, 4, 4, 3), np.uint8), [["a"]], (), ValueError, "2 images but 1 caption lists"),
        (np.zeros((2, 4, 4, 3), np.uint8), [["a"], ["b"]], ("x",), ValueError, "image ids"),
    ],
)
def test_captionset_rejects_bad_fields(images, captions, ids, error, match):
    with pytest.raises(error, match=match):
        CaptionSet(images, captions, ids)
