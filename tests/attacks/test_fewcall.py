"""Few-call stealing: proxy sources, active selection, self-paced pseudo-labels, the whole attack."""

import jax
import numpy as np
import pytest
from PIL import Image

from mexjax import data, oracle
from mexjax.attacks import steal
from tests.train.test_fit import _toy

CLASSES = tuple("abcd")


# --- proxy sources -------------------------------------------------------------------------------


def _write_folder(root, counts, size=(32, 32), names=CLASSES):
    rng = np.random.default_rng(0)
    for name, n in zip(names, counts, strict=True):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_folder_proxies_reads_classes_by_name_or_index_and_resizes(tmp_path):
    _write_folder(tmp_path, [2, 3], names=("B", "2"))  # "B" matches class b in any case; "2" is class c
    Image.fromarray(np.zeros((40, 20, 3), np.uint8)).save(tmp_path / "B" / "odd.png")  # another size
    proxies = steal.folder_proxies(tmp_path, CLASSES)
    assert proxies.images.shape == (6, 32, 32, 3) and proxies.class_names == CLASSES
    assert np.bincount(proxies.labels, minlength=4).tolist() == [0, 3, 3, 0]


def test_folder_proxies_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no proxy folder"):
        steal.folder_proxies(tmp_path / "missing", CLASSES)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        steal.folder_proxies(tmp_path, CLASSES)
    (tmp_path / "zebra").mkdir()
    with pytest.raises(ValueError, match=r"do not match the victim's: folders \['zebra'\]"):
        steal.folder_proxies(tmp_path, CLASSES)


def test_check_proxies_refuses_unbalanced_short_or_mismatched_sets(tmp_path):
    _write_folder(tmp_path, [2, 9, 9, 9])
    proxies = steal.folder_proxies(tmp_path, CLASSES)
    with pytest.raises(ValueError, match=r"fewer images than the 3 calls per class: a \(2\)"):
        steal.proxies.check_proxies(proxies, 4, 3)
    with pytest.raises(ValueError, match="unbalanced .2 to 9 images per class.*balance_proxies"):
        steal.proxies.check_proxies(proxies, 4, 2)
    with pytest.raises(ValueError, match="the proxies have 4 classes but the victim answers 10"):
        steal.proxies.check_proxies(proxies, 10, 1)
    balanced = steal.proxies.balance_proxies(proxies, jax.random.key(0))
    assert np.bincount(balanced.labels).tolist() == [2, 2, 2, 2]
    steal.proxies.check_proxies(balanced, 4, 2)  # accepted


def test_callable_proxies_validates_what_the_callable_returns():
    made = steal.proxies.callable_proxies(
        lambda c, n, key: np.full((n, 8, 8, 3), c / 4.0), CLASSES, 3, key=jax.random.key(0)
    )
    assert made.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert made.images.dtype == np.uint8 and made.images[3, 0, 0, 0] == round(255 / 4)
    with pytest.raises(ValueError, match="expected \\[3, H, W, C\\]"):
        steal.proxies.callable_proxies(
            lambda c, n, key: np.zeros((n + 1, 8, 8, 3)), CLASSES, 3, key=jax.random.key(0)
        )
    with pytest.raises(ValueError, match="finite floats"):
        steal.proxies.callable_proxies(
            lambda c, n, key: np.full((n, 8, 8, 3), np.nan), CLASSES, 3, key=jax.random.key(0)
        )


def test_pool_proxies_follow_the_mapping_and_balance():
    pool = data.Dataset(
        np.arange(7, dtype=np.uint8).reshape(7, 1, 1, 1).repeat(2, 1).repeat(2, 2),
        np.array([0, 0, 1, 1, 1, 2, 2], np.int32), ("w0", "w1", "w2"), name="pool",
    )  # fmt: skip
    mapping = {"x": ("w0",), "y": ("w1", "w2")}
    proxies = steal.pool_proxies(pool, ("x", "y"), mapping, key=jax.random.key(1))
    assert np.bincount(proxies.labels).tolist() == [2, 2]  # balanced to the smallest class
    assert set(proxies.images[proxies.labels == 0, 0, 0, 0].tolist()) == {0, 1}
    assert set(proxies.images[proxies.labels == 1, 0, 0, 0].tolist()) <= {2, 3, 4, 5, 6}
    with pytest.raises(ValueError, match="lacks the mapped classes"):
        steal.pool_proxies(pool, ("x",), {"x": ("w9",)})
    with pytest.raises(ValueError, match="names no pool classes for victim classes \\['z'\\]"):
        steal.pool_proxies(pool, ("x", "z"), mapping)
    with pytest.raises(ValueError, match="only 2 images"):
        steal.pool_proxies(pool, ("x", "y"), mapping, per_class=3)


def test_the_cifar10_table_maps_every_class_to_distinct_tinyimagenet_classes(shared_data):
    pool = data.load("tinyimagenet", "val", data_dir=shared_data, progress=False)
    cifar = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    wnids = [w for c in cifar for w in steal.proxies.TINYIMAGENET_FOR_CIFAR10[c]]
    assert len(wnids) == len(set(wnids)) and set(wnids) <= set(pool.class_names)
    proxies = steal.pool_proxies(pool, cifar, key=jax.random.key(0))
    assert np.bincount(proxies.labels).tolist() == [50] * 10  # val: 50 per TinyImageNet class


# --- selection and pseudo-labels -----------------------------------------------------------------


def test_selection_weights_favour_proxies_near_their_class_centroid():
    latents = np.array([[0.0, 0], [1, 0], [-1, 0], [9, 0], [10, 10], [10, 11], [10, 9]], np.float32)
    classes = np.array([0, 0, 0, 0, 1, 1, 1], np.int32)
    w = steal.fewcall.selection_weights(latents, classes, 2, sigma=1.0)
    centroid = latents[:4].mean(0)
    np.testing.assert_allclose(w[:4], np.exp(-np.linalg.norm(latents[:4] - centroid, axis=1)), rtol=1e-5)
    assert w[3] < w[0]  # the outlier is the least likely of its class
    default = steal.fewcall.selection_weights(latents, classes, 2)  # sigma: median distance of the class
    dist1 = np.linalg.norm(latents[4:] - latents[4:].mean(0), axis=1)
    np.testing.assert_allclose(default[4:], np.exp(-dist1 / np.median(dist1)), rtol=1e-5)


def test_select_queries_draws_per_class_without_replacement_by_weight():
    classes = np.repeat(np.arange(3), 10).astype(np.int32)
    weights = np.where(np.arange(30) % 10 < 2, 1.0, 1e-9)  # two heavy proxies per class
    available = np.ones(30, bool)
    available[10] = False  # class 1's first heavy proxy was already queried
    chosen = steal.fewcall.select_queries(jax.random.key(0), weights, classes, available, 2)
    assert chosen.tolist()[:2] == [0, 1] and chosen.tolist()[4:] == [20, 21]
    assert 11 in chosen and 10 not in chosen and len(set(chosen.tolist())) == 6
    counts = np.zeros(30)
    for seed in range(200):  # uniform weights: every available proxy gets drawn about equally often
        counts[steal.fewcall.select_queries(jax.random.key(seed), np.ones(30), classes, available, 3)] += 1
    assert counts[10] == 0 and counts[available].min() > 30


def test_pseudo_labels_vote_among_the_nearest_queried_and_keep_agreement():
    query_latents = np.array([[0.0, 0], [0, 1], [1, 0], [10, 10], [10, 11]], np.float32)
    query_labels = np.array([0, 0, 0, 1, 1], np.int32)
    latents = np.array([[0.5, 0.5], [10, 10.5], [0.2, 0.1]], np.float32)
    classes = np.array([0, 0, 1], np.int32)  # the second and third were made for another class
    labels, keep = steal.fewcall.pseudo_labels(
        query_latents, query_labels, latents, classes, k=3, num_classes=2
    )
    assert labels.tolist() == [0, 1, 0] and keep.tolist() == [True, False, False]
    # k = 5 over both clusters: the inverse-distance weights still let the near cluster win
    labels, _ = steal.fewcall.pseudo_labels(query_latents, query_labels, latents, classes, k=5, num_classes=2)
    assert labels.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="no queried proxies"):
        steal.fewcall.pseudo_labels(np.zeros((0, 2)), np.zeros(0, np.int32), latents, classes, num_classes=2)


# --- the attack ------------------------------------------------------------------------------------


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match=">= 1"):
        steal.FewCallConfig(calls_per_class=0)
    with pytest.raises(ValueError, match="at least one call per class"):
        steal.FewCallConfig(calls_per_class=2, rounds=3)
    with pytest.raises(ValueError, match="selection"):
        steal.FewCallConfig(selection="greedy")
    with pytest.raises(ValueError, match="sigma"):
        steal.FewCallConfig(sigma=0.0)


FAST = dict(arch="halfalexnet", width=0.125, epochs=4, batch_size=16, learning_rate=3e-3, augment=False)


def _victim(toy_victim, budget):
    net, variables, _ = toy_victim
    return oracle.Oracle(net, variables, np.full(2, 0.9, np.float32), budget=budget)


def test_few_call_steals_the_toy_victim_within_its_calls(toy_victim):
    _, _, test = toy_victim
    proxies = _toy(160, seed=5)  # class-matched proxies: what a generator prompted per class gives
    victim = _victim(toy_victim, budget=1000)
    config = steal.FewCallConfig(calls_per_class=6, rounds=2, k=3, **FAST)
    result = steal.few_call(victim, proxies, config, progress=False)
    assert victim.used == 24 and result.queries_used == 24 and len(set(result.queried.tolist())) == 24
    assert result.net.spec.arch == "halfalexnet" and result.net.num_exits == 1  # config.student(...)
    assert np.bincount(proxies.labels[result.queried]).tolist() == [6, 6, 6, 6]
    assert [r["calls"] for r in result.rounds] == [12, 12]
    assert result.rounds[0]["pseudo_proposed"] == 160 - 12 and 0 < result.rounds[-1]["pseudo_kept"] <= 136
    scores = steal.fewcall.evaluate_few_call(victim, result, test.images, test.labels)
    assert victim.used == 24  # evaluation costs no queries
    assert scores["fidelity"] > 0.6 and scores["accuracy"] > 0.5  # chance: 0.25


def test_few_call_budget_errors_and_exhaustion(toy_victim):
    proxies = _toy(40, seed=6)
    config = steal.FewCallConfig(calls_per_class=4, rounds=2, self_paced=False, **{**FAST, "epochs": 1})
    with pytest.raises(ValueError, match="smaller than the number of classes"):
        steal.few_call(_victim(toy_victim, budget=3), proxies, config, progress=False)
    victim = _victim(toy_victim, budget=10)
    with pytest.warns(UserWarning, match="budget exhausted"):
        result = steal.few_call(victim, proxies, config, progress=False)
    assert result.budget_exhausted and victim.used == 10 and len(result.queried) == 10
    assert len(result.rounds) == 2 and result.rounds[-1]["calls"] == 2  # the second round was cut short
    three = _toy(40, classes=3)
    three = data.Dataset(three.images, three.labels, ("a", "b", "c"))
    with pytest.raises(ValueError, match="the proxies have 3 classes but the victim answers 4"):
        steal.few_call(_victim(toy_victim, budget=100), three, config)


def test_knockoff_calls_spends_the_same_calls_on_random_pool_images(toy_victim):
    pool = _toy(64, seed=7).images
    victim = _victim(toy_victim, budget=100)
    config = steal.FewCallConfig(calls_per_class=2, rounds=1, **{**FAST, "epochs": 1})
    result = steal.fewcall.knockoff_calls(victim, pool, 8, config, progress=False)
    assert result.method == "knockoff" and victim.used == 8 and len(set(result.queried.tolist())) == 8
    assert result.net.num_exits == 1 and result.thresholds is None  # the few-call student, last exit
    scores = steal.fewcall.evaluate_few_call(victim, result, toy_victim[2].images, toy_victim[2].labels)
    assert set(scores) == {"accuracy", "fidelity", "victim_accuracy"}
    with pytest.raises(ValueError, match="pool's 64 images; got 65"):
        steal.fewcall.knockoff_calls(victim, pool, 65, config)
