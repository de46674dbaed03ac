"""Saving and loading a trained captioner with its vocabulary (an Orbax checkpoint)."""

from __future__ import annotations

import dataclasses
import os

import jax

from mexjax.captioning._vocab import Vocabulary
from mexjax.checkpoint import Checkpointer, CheckpointError
from mexjax.nets import Captioner, CaptionerSpec


def save_captioner(directory: str | os.PathLike, captioner: Captioner, variables, vocab: Vocabulary, *,
                   info: dict | None = None) -> None:  # fmt: skip
    """Write variables, spec, vocabulary and `info` (e.g. how it was trained) to `directory`."""
    if len(vocab) != captioner.spec.vocab_size:
        raise ValueError(
            f"the vocabulary has {len(vocab)} tokens but the captioner {captioner.spec.vocab_size}"
        )
    spec = dataclasses.asdict(captioner.spec)
    meta = {"spec": spec, "tokens": list(vocab.tokens), "info": info or {}}
    with Checkpointer(directory, max_to_keep=1) as ckpt:
        ckpt.save(0, jax.device_get(variables), meta)


def load_captioner(directory: str | os.PathLike) -> tuple[Captioner, dict, Vocabulary, dict]:
    """(captioner, variables, vocabulary, info) saved by `save_captioner`; CheckpointError if the
    directory is missing or does not hold a captioner."""
    with Checkpointer(directory, max_to_keep=1) as ckpt:
        meta = ckpt.read_meta()
        if "spec" not in meta or "tokens" not in meta:
            raise CheckpointError(
                f"{directory} does not hold a captioner (no spec / vocabulary in its metadata)"
            )
        spec = dict(meta["spec"])
        spec["input_shape"] = tuple(spec["input_shape"])
        captioner = Captioner(CaptionerSpec(**spec))
        abstract = jax.eval_shape(captioner.init, jax.random.key(0))
        variables, _ = ckpt.restore(abstract)
    return captioner, variables, Vocabulary(meta["tokens"]), dict(meta.get("info", {}))
