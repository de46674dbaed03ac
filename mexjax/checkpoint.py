"""Checkpoints through one small module around Orbax's CheckpointManager.

A checkpoint holds a pytree (`state`: params, batch stats, optimizer state, counters, key data)
and JSON metadata (`meta`: config, network spec, thresholds, epoch). Restoring goes against an
abstract pytree (`jax.eval_shape` of a fresh state) so shapes and dtypes are checked; anything that
does not fit is reported as a CheckpointError naming the directory and what to do.

Public API:
  Checkpointer(directory, *, max_to_keep=2)   save(step, state, meta) (asynchronous: wait() / close()),
                                              restore(abstract_state, step=None) -> (state, meta),
                                              read_meta, latest_step, all_steps
  CheckpointError                             missing, corrupt, or not matching the model restored into
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model it is restored into."""


class Checkpointer:
    """Save and restore (state, meta) pairs numbered by step; keeps the newest `max_to_keep`."""

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 2):
        self.directory = Path(directory).expanduser().resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        """Save asynchronously where Orbax can; `wait()` or `close()` before reading it back."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args)

    def read_meta(self, step: int | None = None) -> dict:
        step = self._resolve(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as err:  # orbax raises many types for unreadable files
            raise CheckpointError(
                f"checkpoint {self.directory} step {step}: metadata is unreadable ({err}). "
                "The checkpoint is corrupt: delete that step's folder to fall back to an older one."
            ) from err
        return dict(restored["meta"])

    def restore(self, abstract_state, step: int | None = None):
        """(state, meta) of `step` (default: the newest), checked against `abstract_state`."""
        step = self._resolve(step)
        self._check_stored_shapes(step, abstract_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        try:
            restored = self._manager.restore(step, args=args)
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {self.directory} step {step} cannot be restored into this model: "
                f"{type(err).__name__}: {err}. It is corrupt, or it was saved for another model or "
                "configuration: use a fresh directory, or restore with the configuration it was saved with."
            ) from err
        _check_shapes(restored["state"], abstract_state, self.directory)
        return restored["state"], dict(restored["meta"])

    def _check_stored_shapes(self, step, abstract_state):
        """Compare the stored tree with the expected one before reading any array."""
        try:
            stored = self._manager.item_metadata(step)["state"]
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {self.directory} step {step}: its metadata is unreadable ({err}); the "
                "checkpoint is corrupt: delete that step's folder to fall back to an older one."
            ) from err
        if stored is None:
            raise CheckpointError(f"checkpoint {self.directory} step {step} has no readable state")
        want = _describe(abstract_state)
        got = _describe(stored)
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:4]
            raise CheckpointError(
                f"checkpoint {self.directory} step {step} does not match this model: it differs in "
                f"{diff} (path, (shape, dtype)). It was saved for another architecture or "
                "configuration: restore it with that configuration, or train into a fresh directory."
            )

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def _resolve(self, step):
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointError(f"no checkpoint in {self.directory}")
        elif step not in self._manager.all_steps():
            raise CheckpointError(f"{self.directory} has no step {step}; it has {self.all_steps()}")
        return step


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey: stored alike by Orbax
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _describe(tree) -> dict:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(map(_key_name, path)): (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in flat}


def _check_shapes(state, abstract, directory):
    got = jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), state)
    want = jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), abstract)
    if got != want:
        raise CheckpointError(f"checkpoint {directory} holds arrays of other shapes than this model expects")
