"""Saving and loading a trained multi-exit network with its thresholds (one Orbax checkpoint)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Mapping

import numpy as np

from mexjax.checkpoint import Checkpointer, CheckpointError
from mexjax.nets._arch import NetSpec, Unit
from mexjax.nets._model import MultiExitNet

FORMAT = "mexjax.model/1"
CHECKSUMS = "sha256sums.json"  # every file of the checkpoint, checked on load


def _digests(directory: str) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if rel == CHECKSUMS:
                continue
            with open(path, "rb") as f:
                out[rel] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def _verify(directory) -> None:
    """Every file listed at save time is there with the same sha256 (models saved before the
    checksums were written load unchecked)."""
    listed = os.path.join(directory, CHECKSUMS)
    if not os.path.exists(listed):
        return
    try:
        with open(listed) as f:
            expected = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{listed} is unreadable ({err}): save the model again") from err
    found = _digests(str(directory))
    damaged = sorted(k for k in expected if found.get(k) != expected[k])
    if damaged:
        raise CheckpointError(
            f"the model in {directory} is damaged: {len(damaged)} file(s) changed or missing since it was "
            f"saved (e.g. {damaged[0]}); save or train it again (`python -m mexjax train-victim`)"
        )


def spec_to_dict(spec: NetSpec) -> dict:
    return dataclasses.asdict(spec)


def spec_from_dict(d: dict) -> NetSpec:
    try:
        units = tuple(Unit(**{**u, "in_size": tuple(u["in_size"])}) for u in d["units"])
        fields = {**d, "units": units}
        for name in ("input_shape", "ic_units", "head_hidden", "mean", "std"):
            fields[name] = tuple(fields[name])
        return NetSpec(**fields)
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"the saved network spec is incomplete or from another version: {err}") from err


def save(directory: str | os.PathLike, net: MultiExitNet, variables, *, thresholds=None, info=None) -> None:
    """Save variables, spec, thresholds (f32[K-1] or None) and any JSON-able `info`.

    A model already in `directory` is replaced, and only once the new one is written in full (a save
    that fails leaves the old model as it was)."""
    if thresholds is not None:
        from mexjax.exits import check_thresholds

        thresholds = check_thresholds(thresholds, net.num_exits).tolist()
    meta = {"format": FORMAT, "spec": spec_to_dict(net.spec), "thresholds": thresholds, "info": info or {}}
    if not isinstance(variables, Mapping):
        raise ValueError(
            f"variables must be a dict {{'params': ..., 'batch_stats': ...}}; got {type(variables).__name__}"
        )
    missing = [k for k in ("params", "batch_stats") if k not in variables]
    if missing:
        raise ValueError(
            f"variables lack {' and '.join(repr(k) for k in missing)} (they hold {sorted(variables)}): save "
            "the whole dict that net.init or training returned"
        )
    saved = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    if net.spec.activation_bits is not None:  # a quantized net's activation ranges
        if "quant" not in variables:
            raise ValueError("this net quantizes activations: calibrate it (nets.calibrate) before saving")
        saved["quant"] = variables["quant"]
    _check_fits(net, saved)
    target = os.path.abspath(directory)
    fresh = f"{target}.saving-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    with Checkpointer(fresh, max_to_keep=1) as ckpt:
        ckpt.save(0, saved, meta)
    with open(os.path.join(fresh, CHECKSUMS), "w") as f:
        json.dump(_digests(fresh), f, indent=0, sort_keys=True)
    if os.path.exists(target):
        old = f"{target}.replaced-{os.getpid()}"
        os.rename(target, old)
        os.rename(fresh, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(fresh, target)


def _check_fits(net: MultiExitNet, saved: dict) -> None:
    """The variables have the structure and shapes of the net's spec (else the checkpoint could
    never be loaded back into that spec)."""
    import jax

    expected = net.abstract_variables()
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(saved)}
    wrong = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    if wrong:
        first = wrong[0]
        raise ValueError(
            f"these variables do not fit the net's spec ({len(wrong)} arrays differ; e.g. {first}: "
            f"{got.get(first, 'missing')} given, {want.get(first, 'not in the spec')} expected): "
            "save the variables with the net that made them (same arch, width, exits, classes)"
        )


def load(
    directory: str | os.PathLike, *, require_checksums: bool = False
) -> tuple[MultiExitNet, dict, np.ndarray | None, dict]:
    """(net, variables, thresholds or None, info) of a model saved by `save`.

    require_checksums: refuse a model without its checksum list (models saved before the checksums
    were written otherwise load unchecked); for shipped models, whose damage must never go unseen."""
    if not os.path.isdir(directory):
        raise CheckpointError(
            f"no saved model at {directory}: train one with `python -m mexjax train-victim`"
        )
    if require_checksums and not os.path.isfile(os.path.join(directory, CHECKSUMS)):
        raise CheckpointError(f"{directory} has no checksum list ({CHECKSUMS}): save the model again")
    _verify(directory)
    with Checkpointer(directory, max_to_keep=1) as ckpt:
        meta = ckpt.read_meta()
        if meta.get("format") != FORMAT:
            raise CheckpointError(
                f"{directory} is not a mexjax model checkpoint (format {meta.get('format')!r})"
            )
        net = MultiExitNet(spec_from_dict(meta["spec"]))
        variables, _ = ckpt.restore(net.abstract_variables())
    thresholds = None if meta["thresholds"] is None else np.asarray(meta["thresholds"], np.float32)
    return net, variables, thresholds, meta["info"]


def transfer_backbone(source, target) -> tuple[dict, int]:
    """Warm-start `target` variables from a trained `source` of the same backbone: every array of the
    backbone (and of the final head's hidden layers) whose path and shape match is copied; the exit
    heads (`ics_*`, placed by the number of exits) and layers sized by the classes keep their fresh
    values. Returns (variables, number of arrays copied) — why: the stealing paper fine-tunes a
    pre-trained student, and a student of K exits must reuse a backbone trained with another K."""
    import jax

    found = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(source)}
    copied = 0

    def pick(path, fresh):
        nonlocal copied
        name = jax.tree_util.keystr(path)
        old = found.get(name)
        if "ics_" in name or old is None or np.shape(old) != np.shape(fresh):
            return fresh
        copied += 1
        return np.asarray(old, dtype=np.asarray(fresh).dtype)

    out = jax.tree_util.tree_map_with_path(pick, dict(target))
    return out, copied
