"""Flickr8k and COCO Captions loaders, on tiny copies written in the official layouts."""

import json

import numpy as np
import pytest
from PIL import Image

from mexjax.captioning import load_coco, load_flickr8k
from mexjax.data import CorruptDataError, DatasetNotFoundError

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (250, 250, 250)]


def _jpeg(path, colour, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(path, quality=95)


def _write_flickr8k(root, *, text_dir=".", image_dir="Flicker8k_Dataset"):
    names = [f"{1000 + i}_abc.jpg" for i in range(5)]
    for name, colour in zip(names, COLOURS, strict=True):
        _jpeg(root / image_dir / name, colour)
    text = root / text_dir
    text.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, name in enumerate(names):  # written #1 before #0 to check the ordering
        lines += [f"{name}#1\tImage {i}, second caption .", f"{name}#0\tA First caption of image {i}!"]
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (text / "Flickr_8k.trainImages.txt").write_text("\n".join(names[:3]) + "\n")
    (text / "Flickr_8k.devImages.txt").write_text(names[3] + "\n")
    (text / "Flickr_8k.testImages.txt").write_text(names[4] + "\n\n")
    return names


def _mean_colours(cset):
    return cset.images.reshape(len(cset), -1, 3).mean(axis=1)


def test_flickr8k_splits_captions_and_images(tmp_path):
    names = _write_flickr8k(tmp_path)
    train = load_flickr8k(tmp_path, "train", image_size=16)
    assert train.images.shape == (3, 16, 16, 3) and train.images.dtype == np.uint8
    assert train.image_ids == tuple(names[:3]) and (train.name, train.split) == ("flickr8k", "train")
    assert train.captions[1] == ["a first caption of image 1", "image 1 second caption"]
    np.testing.assert_allclose(_mean_colours(train), COLOURS[:3], atol=4)
    val = load_flickr8k(tmp_path, "dev", image_size=8)
    assert val.image_ids == (names[3],) and val.split == "val"
    np.testing.assert_allclose(
        _mean_colours(load_flickr8k(tmp_path, "test", image_size=8)), [COLOURS[4]], atol=4
    )
    everything = load_flickr8k(tmp_path, "all", image_size=8)
    assert everything.image_ids == tuple(names)
    limited = load_flickr8k(tmp_path, "all", image_size=8, limit=2)
    assert limited.image_ids == tuple(names[:2])
    np.testing.assert_array_equal(limited.images, everything.images[:2])


def test_flickr8k_text_subfolder_and_images_folder(tmp_path):
    names = _write_flickr8k(tmp_path, text_dir="Flickr8k_text", image_dir="Images")
    assert load_flickr8k(str(tmp_path), "val", image_size=8).image_ids == (names[3],)


def test_flickr8k_missing_files_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not a directory"):
        load_flickr8k(tmp_path / "nowhere", image_size=8)
    with pytest.raises(DatasetNotFoundError, match=r"Flickr8k.token.txt not found.*image.jpg#k<TAB>caption"):
        load_flickr8k(tmp_path, image_size=8)
    names = _write_flickr8k(tmp_path)
    (tmp_path / "Flickr_8k.devImages.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="Flickr_8k.devImages.txt"):
        load_flickr8k(tmp_path, "val", image_size=8)
    (tmp_path / "Flicker8k_Dataset" / names[0]).unlink()
    with pytest.raises(DatasetNotFoundError, match=names[0]):
        load_flickr8k(tmp_path, "train", image_size=8)
    for name in names[1:]:
        (tmp_path / "Flicker8k_Dataset" / name).unlink()
    (tmp_path / "Flicker8k_Dataset").rmdir()
    with pytest.raises(DatasetNotFoundError, match="Flicker8k_Dataset"):
        load_flickr8k(tmp_path, "train", image_size=8)


def test_flickr8k_corrupt_files_are_named(tmp_path):
    names = _write_flickr8k(tmp_path)
    (tmp_path / "Flicker8k_Dataset" / names[4]).write_bytes(b"not a jpeg")
    with pytest.raises(CorruptDataError, match=f"cannot decode image .*{names[4]}"):
        load_flickr8k(tmp_path, "test", image_size=8)
    tokens = tmp_path / "Flickr8k.token.txt"
    original = tokens.read_text()
    tokens.write_text(original + "no tab or number here\n")
    with pytest.raises(CorruptDataError, match=r"Flickr8k.token.txt:11 is not 'image.jpg#k<TAB>caption'"):
        load_flickr8k(tmp_path, "train", image_size=8)
    tokens.write_text("\n".join(line for line in original.splitlines() if not line.startswith(names[3])))
    with pytest.raises(CorruptDataError, match=f"no caption for 1 image.*{names[3]}"):
        load_flickr8k(tmp_path, "val", image_size=8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "validation"}, ValueError, "split must be one of"),
        ({"image_size": 0}, ValueError, "image_size must be an integer >= 1"),
        ({"limit": -1}, ValueError, "limit must be None or an integer >= 0"),
    ],
)
def test_flickr8k_bad_arguments(tmp_path, kwargs, error, match):
    _write_flickr8k(tmp_path)
    with pytest.raises(error, match=match):
        load_flickr8k(tmp_path, **{"image_size": 8, **kwargs})


def _write_coco(root, split="val", year=2014):
    images = [  # ids out of order; one image without captions; one grayscale
        {"id": 42, "file_name": f"COCO_{split}{year}_000000000042.jpg", "height": 30, "width": 40},
        {"id": 7, "file_name": f"COCO_{split}{year}_000000000007.jpg", "height": 30, "width": 40},
        {"id": 9, "file_name": f"COCO_{split}{year}_000000000009.jpg", "height": 30, "width": 40},
        {"id": 13, "file_name": f"COCO_{split}{year}_000000000013.jpg", "height": 30, "width": 40},
    ]
    colours = {42: COLOURS[0], 7: COLOURS[1], 9: COLOURS[2], 13: (128, 128, 128)}
    for image in images:
        mode = "L" if image["id"] == 13 else "RGB"
        _jpeg(root / f"{split}{year}" / image["file_name"], colours[image["id"]], mode=mode)
    annotations = [
        {"id": 1, "image_id": 42, "caption": "A man riding a wave on top of a surfboard."},
        {"id": 2, "image_id": 7, "caption": "Two dogs play\n"},
        {"id": 3, "image_id": 42, "caption": "A Surfer, in the ocean"},
        {"id": 4, "image_id": 13, "caption": "A gray wall."},
    ]
    doc = {"info": {}, "licenses": [], "images": images, "annotations": annotations}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / f"captions_{split}{year}.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_orders_by_id_and_groups_captions(tmp_path):
    _write_coco(tmp_path)
    cset = load_coco(tmp_path, "val", image_size=12)
    assert (cset.name, cset.split) == ("coco2014", "val")
    assert cset.image_ids == tuple(
        f"COCO_val2014_0000000000{i:02d}.jpg" for i in (7, 13, 42)
    )  # 9: no caption
    assert cset.captions == [
        ["two dogs play"],
        ["a gray wall"],
        ["a man riding a wave on top of a surfboard", "a surfer in the ocean"],
    ]
    assert cset.images.shape == (3, 12, 12, 3)
    np.testing.assert_allclose(_mean_colours(cset), [COLOURS[1], (128, 128, 128), COLOURS[0]], atol=4)
    limited = load_coco(tmp_path, "val", image_size=12, year=2014, limit=1)
    assert limited.image_ids == cset.image_ids[:1]


def test_coco_2017_and_the_year_choice(tmp_path):
    _write_coco(tmp_path, "train", 2017)
    cset = load_coco(tmp_path, image_size=8)
    assert cset.name == "coco2017" and cset.image_ids[0] == "COCO_train2017_000000000007.jpg"
    with pytest.raises(DatasetNotFoundError, match="captions_train2014.json"):
        load_coco(tmp_path, image_size=8, year=2014)
    _write_coco(tmp_path, "train", 2014)
    with pytest.raises(ValueError, match="pass year=2014 or year=2017"):
        load_coco(tmp_path, image_size=8)
    assert load_coco(tmp_path, image_size=8, year=2014).name == "coco2014"


def test_coco_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"captions_val2014.json.*'images' and 'annotations'"):
        load_coco(tmp_path, "val", image_size=8)
    path = _write_coco(tmp_path)
    doc = json.loads(path.read_text())
    path.write_text(path.read_text()[:-20])
    with pytest.raises(CorruptDataError, match="captions_val2014.json is not valid JSON"):
        load_coco(tmp_path, "val", image_size=8)
    path.write_text(json.dumps({"images": doc["images"]}))
    with pytest.raises(CorruptDataError, match="'images' and 'annotations' lists"):
        load_coco(tmp_path, "val", image_size=8)
    path.write_text(json.dumps({**doc, "annotations": [{"image_id": 42}]}))
    with pytest.raises(
        CorruptDataError, match=r"annotations\[0\] needs an integer 'image_id' and a string 'caption'"
    ):
        load_coco(tmp_path, "val", image_size=8)
    path.write_text(json.dumps({**doc, "annotations": [{"image_id": 5, "caption": "x"}]}))
    with pytest.raises(CorruptDataError, match="image_id 5, which is not in 'images'"):
        load_coco(tmp_path, "val", image_size=8)
    path.write_text(json.dumps({**doc, "images": [{"id": "7"}]}))
    with pytest.raises(CorruptDataError, match=r"images\[0\] needs an integer 'id'"):
        load_coco(tmp_path, "val", image_size=8)
    path.write_text(json.dumps({**doc, "annotations": []}))
    with pytest.raises(CorruptDataError, match="holds no captions"):
        load_coco(tmp_path, "val", image_size=8)
    path.write_text(json.dumps(doc))
    (tmp_path / "val2014" / "COCO_val2014_000000000013.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="COCO_val2014_000000000013.jpg is missing"):
        load_coco(tmp_path, "val", image_size=8)
    (tmp_path / "val2014").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetNotFoundError, match="image folder .*val2014 is missing"):
        load_coco(tmp_path, "val", image_size=8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "test"}, "'train' or 'val'"),
        ({"year": 2015}, "2014, 2017 or None"),
        ({"image_size": 2.5}, "image_size"),
    ],
)
def test_coco_bad_arguments(tmp_path, kwargs, match):
    _write_coco(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_coco(tmp_path, **{"split": "val", "image_size": 8, **kwargs})
