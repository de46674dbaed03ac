"""Saving and loading a trained multi-exit network with its thresholds (one Orbax checkpoint)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mexjax.checkpoint import Checkpointer, CheckpointError
from mexjax.nets._arch import NetSpec, Unit
from mexjax.nets._model import MultiExitNet

FORMAT = "mexjax.model/1"


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
    """Save variables, spec, thresholds (f32[K-1] or None) and any JSON-able `info`."""
    if thresholds is not None:
        from mexjax.exits import check_thresholds

        thresholds = check_thresholds(thresholds, net.num_exits).tolist()
    meta = {"format": FORMAT, "spec": spec_to_dict(net.spec), "thresholds": thresholds, "info": info or {}}
    with Checkpointer(directory, max_to_keep=1) as ckpt:
        saved = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
        if net.spec.activation_bits is not None:  # a quantized net's activation ranges
            if "quant" not in variables:
                raise ValueError(
                    "this net quantizes activations: calibrate it (nets.calibrate) before saving"
                )
            saved["quant"] = variables["quant"]
        ckpt.save(0, saved, meta)


def load(directory: str | os.PathLike) -> tuple[MultiExitNet, dict, np.ndarray | None, dict]:
    """(net, variables, thresholds or None, info) of a model saved by `save`."""
    if not os.path.isdir(directory):
        raise CheckpointError(
            f"no saved model at {directory}: train one with `python -m mexjax train-victim`"
        )
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
