"""The generated shapes task: captions name exactly what is drawn, lengths follow the object count."""

import numpy as np
import pytest

from mexjax.captioning import SHAPE_COLORS, SHAPE_KINDS, cell_name, shapes_dataset, shapes_grid, tokenize


def _cells(grid):
    """{cell name: (row, column)} for a grid."""
    return {cell_name(r, c, grid): (r, c) for r in range(grid) for c in range(grid)}


def _parse(caption, grid):
    """'a red circle top left and ...' -> [(colour, kind, (row, column)), ...] in caption order."""
    cells = _cells(grid)
    out = []
    for phrase in caption.split(" and "):
        words = phrase.split()
        assert words[0] == "a", caption
        out.append((words[1], words[2], cells[" ".join(words[3:])]))
    return out


def _kind(mask):
    """Tell the shape of a boolean mask from its bounding box: squares fill it, triangles fill only
    the bottom row, circles fill neither."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if box.all():
        return "square"
    if box[-1].all() and box[0].mean() < 0.3:
        return "triangle"
    assert box[-1].mean() < 0.7 and box[0].mean() < 0.7
    return "circle"


@pytest.mark.parametrize(("image_size", "max_objects"), [(32, 4), (16, 4), (24, 9), (40, 6)])
def test_captions_name_exactly_the_drawn_objects(image_size, max_objects):
    cset = shapes_dataset(40, image_size=image_size, max_objects=max_objects, seed=3)
    grid = shapes_grid(max_objects)
    side = image_size // grid
    assert cset.images.shape == (40, image_size, image_size, 3) and cset.images.dtype == np.uint8
    for image, refs in zip(cset.images, cset.captions, strict=True):
        named = {cell: (colour, kind) for colour, kind, cell in _parse(refs[0], grid)}
        bright = image.max(axis=-1) > 120  # every shape colour is bright, the background dark
        for r in range(grid):
            for c in range(grid):
                patch = image[r * side : (r + 1) * side, c * side : (c + 1) * side]
                mask = bright[r * side : (r + 1) * side, c * side : (c + 1) * side]
                if (r, c) not in named:
                    assert not mask.any(), f"cell {(r, c)} is not in {refs[0]!r} but holds a shape"
                    continue
                colour, kind = named[(r, c)]
                assert mask.sum() >= 8, f"{colour} {kind} at {(r, c)} missing"
                np.testing.assert_array_equal(np.unique(patch[mask], axis=0), [SHAPE_COLORS[colour]])
                assert _kind(mask) == kind
                # a 1-pixel margin: shapes never touch a neighbouring cell
                assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        # leftover rows/columns when image_size is not a multiple of the grid stay background
        assert not bright[grid * side :].any() and not bright[:, grid * side :].any()


def test_caption_length_grows_with_the_number_of_objects():
    cset = shapes_dataset(200, seed=1)
    counts = np.array([len(_parse(refs[0], 2)) for refs in cset.captions])
    lengths = np.array([len(tokenize(refs[0])) for refs in cset.captions])
    np.testing.assert_array_equal(lengths, 6 * counts - 1)  # "a colour kind row column" + "and" between
    assert set(counts.tolist()) == {1, 2, 3, 4}
    assert np.bincount(counts)[1:].min() >= 30  # drawn uniformly: no count is rare
    for k in range(1, 4):  # more objects, longer captions
        assert lengths[counts == k].max() < lengths[counts == k + 1].min()


def test_nine_cells_with_a_one_word_center():
    assert shapes_grid(4) == 2 and shapes_grid(5) == 3
    assert cell_name(0, 0, 2) == "top left" and cell_name(1, 1, 2) == "bottom right"
    assert cell_name(1, 1, 3) == "center" and cell_name(1, 0, 3) == "middle left"
    assert cell_name(2, 1, 3) == "bottom center"
    cset = shapes_dataset(60, image_size=24, max_objects=9, seed=0)
    counts = [len(_parse(refs[0], 3)) for refs in cset.captions]
    assert max(counts) > 4
    assert any(" center" in refs[0] for refs in cset.captions)


def test_three_references_name_the_same_objects_in_other_orders():
    cset = shapes_dataset(30, seed=2)
    for refs in cset.captions:
        assert len(refs) == 3
        canonical, reverse, by_column = (_parse(r, 2) for r in refs)
        assert canonical == sorted(canonical, key=lambda o: o[2])  # reading order
        assert reverse == canonical[::-1]
        assert by_column == sorted(canonical, key=lambda o: (o[2][1], o[2][0]))
        if len(canonical) == 1:
            assert refs[0] == refs[1] == refs[2]
        assert all(r == r.lower() and r == " ".join(tokenize(r)) for r in refs)  # plain strings


def test_deterministic_per_seed_and_prefix_stable():
    a = shapes_dataset(12, seed=7)
    b = shapes_dataset(12, seed=7)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions and a.image_ids == b.image_ids
    c = shapes_dataset(12, seed=8)
    assert not np.array_equal(a.images, c.images) and a.captions != c.captions
    head = shapes_dataset(5, seed=7)
    np.testing.assert_array_equal(head.images, a.images[:5])
    assert head.captions == a.captions[:5]
    assert len(shapes_dataset(0)) == 0


def test_background_is_noisy_and_vocabulary_small():
    cset = shapes_dataset(20, seed=0)
    dark = cset.images[cset.images.max(axis=-1) <= 120]
    assert dark.std() > 1  # slightly noisy, not flat
    words = {w for refs in cset.captions for r in refs for w in r.split()}
    assert words <= {"a", "and", "top", "bottom", "left", "right", *SHAPE_COLORS, *SHAPE_KINDS}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": -1}, ValueError, "n must be >= 0"),
        ({"n": 2.0}, TypeError, "n must be an integer"),
        ({"n": 2, "image_size": 15}, ValueError, "image_size >= 16"),
        ({"n": 2, "image_size": 23, "max_objects": 5}, ValueError, "image_size >= 24"),
        ({"n": 2, "max_objects": 0}, ValueError, r"max_objects must be in \[1, 9\]"),
        ({"n": 2, "max_objects": 10}, ValueError, r"max_objects must be in \[1, 9\]"),
        ({"n": 2, "max_objects": True}, TypeError, "max_objects must be an integer"),
        ({"n": 2, "seed": -3}, ValueError, "seed must be >= 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        shapes_dataset(**kwargs)
