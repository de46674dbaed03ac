"""Three inference paths over the stage functions of a multi-exit network, agreeing exactly.

(a) `all_exits`: every stage on the whole batch, the policy applied after;
(b) `early_exit_single`: one image, stages run one by one, stopping at its exit;
(c) `early_exit_batched`: after each stage only undecided samples go on, compacted and padded to a
    few bucket sizes so that nothing recompiles after warm-up.

Exactness: XLA picks kernels by shape, so the same row computed at batch 1 and inside a batch of 64
can differ in the last bits. An `ExitRunner` therefore runs every stage on fixed *tiles* of `tile`
rows (a compiled loop over tiles): with the same tile, all paths run the same compiled stage body on
every row and agree bit for bit. tile=1 makes the batched paths agree with true batch-1 early exit;
larger tiles batch more work per kernel (faster) and still agree among (a), (c) and the tiled (b).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mexjax.exits._policy import assign, check_thresholds, confidence, probabilities

StageFn = Callable  # (variables, features) -> (features, logits)


def _tiled_stage(stage: StageFn, tile: int, variables, feats):
    """Run `stage` on consecutive tiles of `tile` rows; returns (features, probabilities)."""
    rows = feats.shape[0]
    tiles = feats.reshape(rows // tile, tile, *feats.shape[1:])

    def body(x):
        out, logits = stage(variables, x)
        return out, probabilities(logits)

    out, probs = jax.lax.map(body, tiles)
    flat = jax.tree_util.tree_map(lambda a: a.reshape(rows, *a.shape[2:]), (out, probs))
    return flat


@functools.partial(jax.jit, static_argnames="size")
def _compact(undecided, feats, ids, *, size):
    """Move undecided rows first (stable) and keep `size` rows: (features, ids, valid)."""
    order = jnp.argsort(jnp.logical_not(undecided), stable=True)[:size]
    return feats[order], ids[order], undecided[order]


@jax.jit
def _decide(probs, valid, threshold):
    conf = confidence(probs)
    leave = jnp.logical_and(valid, conf >= threshold)
    stay = jnp.logical_and(valid, jnp.logical_not(leave))
    return leave, stay, jnp.sum(stay.astype(jnp.int32))


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True, eq=False)
class ExitRunner:
    """Early-exit inference over a fixed sequence of stage functions.

    Attributes:
      stages: stage i maps (variables, features) -> (features, logits_i); stage 0 takes images.
      tile: rows per compiled stage call (see the module docstring).
      buckets: padded batch sizes of the batched path, each a multiple of `tile`, increasing.
      check: optional input validation applied to every batch first (e.g. `MultiExitNet.check_inputs`,
        which `MultiExitNet.runner` passes): it raises clear errors and returns the batch to run.
        Without one, uint8 images are scaled by 1/255 to float32 in [0, 1] (as `check_inputs` does)
        and other inputs go to stage 0 as they are.
      compiled: optional dict shared by runners over the same stages (`MultiExitNet.runner` passes
        one per net) that keeps each (stage, tile)'s jitted tiled body, so that a new runner, e.g. a
        new oracle or an evaluation over the same net, reuses the programs already compiled instead
        of compiling every stage again.
    """

    stages: tuple[StageFn, ...]
    tile: int = 1
    buckets: tuple[int, ...] = (8, 32, 128, 512)
    check: Callable | None = None
    compiled: dict | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if not self.stages:
            raise ValueError("an ExitRunner needs at least one stage function")
        if not _is_int(self.tile) or self.tile < 1:
            raise ValueError(f"tile must be a positive int; got {self.tile!r}")
        buckets = tuple(self.buckets)
        if not buckets:
            raise ValueError(
                f"buckets must name at least one padded batch size (a multiple of tile={self.tile}); got ()"
            )
        if (
            not all(_is_int(b) and b >= 1 for b in buckets)
            or any(b % self.tile for b in buckets)
            or list(buckets) != sorted(buckets)
        ):
            raise ValueError(f"buckets {buckets} must increase and be multiples of tile={self.tile}")
        object.__setattr__(self, "buckets", buckets)
        object.__setattr__(self, "_fns", tuple(self._tiled(s) for s in self.stages))

    def _tiled(self, stage: StageFn):
        if self.compiled is None:
            return jax.jit(functools.partial(_tiled_stage, stage, self.tile))
        key = (stage, self.tile)
        if key not in self.compiled:
            self.compiled[key] = jax.jit(functools.partial(_tiled_stage, stage, self.tile))
        return self.compiled[key]

    @property
    def num_exits(self) -> int:
        return len(self.stages)

    def _checked(self, x):
        if self.check is not None:
            return self.check(x)
        if getattr(x, "dtype", None) is not None and np.dtype(x.dtype) == np.uint8:
            return jnp.asarray(x).astype(jnp.float32) / 255.0  # exactly as MultiExitNet.check_inputs
        return x

    @staticmethod
    def pad_rows(x, rows: int) -> np.ndarray:
        """Zero rows appended on the host (an eager jnp.pad would compile once per input size)."""
        x = np.asarray(x)
        if x.shape[0] == rows:
            return x
        out = np.zeros((rows, *x.shape[1:]), x.dtype)
        out[: x.shape[0]] = x
        return out

    # (a) -----------------------------------------------------------------------------------
    def all_exits(self, variables, x) -> jax.Array:
        """Probabilities at every exit: f32[K, B, C] (no early exit)."""
        x = self._checked(x)
        n = x.shape[0]
        rows = -(-n // self.tile) * self.tile
        h = self.pad_rows(x, rows)
        probs = []
        for fn in self._fns:
            h, p = fn(variables, h)
            probs.append(p[:n])
        return jnp.stack(probs)

    def policy(self, variables, x, thresholds) -> tuple[np.ndarray, np.ndarray]:
        """Path (a): (exits int32[B], probabilities f32[B, C]) with the policy applied afterwards."""
        thresholds = check_thresholds(thresholds, self.num_exits)
        probs = self.all_exits(variables, x)
        exits = assign(confidence(probs).T, jnp.asarray(thresholds))
        return np.asarray(exits), np.asarray(jnp.take_along_axis(probs, exits[None, :, None], axis=0)[0])

    # (b) -----------------------------------------------------------------------------------
    def early_exit_single(self, variables, image, thresholds) -> tuple[int, np.ndarray]:
        """Path (b): one image [1, H, W, C] (or [H, W, C]); stages run until its exit.

        Returns (exit index, probabilities f32[C])."""
        thresholds = check_thresholds(thresholds, self.num_exits)
        h = image[None] if getattr(image, "ndim", None) == 3 else image
        if h.shape[0] != 1:
            raise ValueError(f"early_exit_single takes one image; got a batch of {h.shape[0]}")
        return self.early_exit_unchecked(
            variables, self.pad_rows(np.asarray(self._checked(h)), self.tile), thresholds
        )

    def lean(self, variables, example) -> LeanPath:
        """The timed path of (b) made as lean as JAX allows (see `LeanPath`), for `variables` and
        inputs shaped like `example` [1, H, W, C] (validated, float32)."""
        leaves, treedef = jax.tree_util.tree_flatten(variables)
        leaves = [jax.device_put(leaf) for leaf in leaves]
        h = jnp.asarray(self.pad_rows(np.asarray(example, np.float32), self.tile))
        signature = (treedef, tuple((leaf.shape, leaf.dtype) for leaf in leaves))
        compiled = []
        for stage in self.stages:
            key = ("lean", stage, self.tile, signature, h.shape, h.dtype)
            fn = None if self.compiled is None else self.compiled.get(key)
            if fn is None:

                def flat_stage(flat, x, stage=stage):
                    return _tiled_stage(stage, self.tile, jax.tree_util.tree_unflatten(treedef, flat), x)

                fn = jax.jit(flat_stage).lower(leaves, h).compile()
                if self.compiled is not None:  # another oracle over the same spec reuses it
                    self.compiled[key] = fn
            compiled.append(fn)
            h, _ = fn(leaves, h)
        return LeanPath(tuple(compiled), leaves)

    def early_exit_unchecked(self, variables, tile_rows: np.ndarray, thresholds: np.ndarray):
        """The lean timed path of (b): `tile_rows` is one validated image padded to the tile
        (f32[tile, H, W, C]) and `thresholds` validated float32; nothing is checked here, so a
        served victim's answer time is the network's, not the validation's."""
        h = tile_rows
        last = len(self._fns) - 1
        for i, fn in enumerate(self._fns):
            h, probs = fn(variables, h)
            row = np.asarray(probs)[0]
            if i == last or row.max() >= thresholds[i]:
                return i, row
        raise AssertionError("unreachable: the last exit always answers")

    # (c) -----------------------------------------------------------------------------------
    def bucket(self, n: int) -> int:
        for b in self.buckets:
            if b >= n:
                return b
        return -(-n // self.buckets[-1]) * self.buckets[-1]

    def early_exit_batched(self, variables, x, thresholds) -> tuple[np.ndarray, np.ndarray]:
        """Path (c): (exits int32[B], probabilities f32[B, C]); only undecided rows go on."""
        thresholds = check_thresholds(thresholds, self.num_exits)
        x = self._checked(x)
        n = x.shape[0]
        exits = np.full(n, self.num_exits - 1, np.int32)
        out = None
        size = self.bucket(n)
        h = self.pad_rows(x, size)
        ids = np.arange(size, dtype=np.int32)
        valid = ids < n
        last = self.num_exits - 1
        for i, fn in enumerate(self._fns):
            h, probs = fn(variables, h)
            threshold = np.float32(thresholds[i] if i < last else 0.0)
            leave, stay, count = _decide(probs, valid, threshold)
            leave_np, ids_np, probs_np = np.asarray(leave), np.asarray(ids), np.asarray(probs)
            if out is None:
                out = np.zeros((n, probs_np.shape[-1]), np.float32)
            out[ids_np[leave_np]] = probs_np[leave_np]
            exits[ids_np[leave_np]] = i
            remaining = int(count)
            if remaining == 0 or i == last:
                break
            size = self.bucket(remaining)
            h, ids, valid = _compact(stay, h, ids, size=size)
        return exits, out

    def warmup(self, variables, example, *, max_batch: int | None = None) -> None:
        """Compile every (stage, bucket) and compaction shape the batched path can meet."""
        max_batch = self.buckets[-1] if max_batch is None else max_batch
        example = self._checked(example)
        sizes = [b for b in self.buckets if b <= self.bucket(max_batch)]
        feats = {s: jnp.zeros((s, *example.shape[1:]), example.dtype) for s in sizes}
        for i, fn in enumerate(self._fns):
            outs = {s: fn(variables, feats[s]) for s in sizes}
            for s in sizes:
                _decide(outs[s][1], jnp.ones(s, bool), jnp.asarray(0.5, jnp.float32))
                if i < self.num_exits - 1:
                    for t in sizes:
                        if t <= s:
                            _compact(jnp.ones(s, bool), outs[s][0], jnp.arange(s, dtype=jnp.int32), size=t)
            feats = {s: outs[s][0] for s in sizes}
        self.early_exit_single(variables, example[:1], np.zeros(self.num_exits - 1, np.float32))


@dataclasses.dataclass(frozen=True, eq=False)
class LeanPath:
    """Batch-1 early exit with nothing around the stages but what must be there.

    Every microsecond of dispatch around a stage is noise that a timing side channel has to see
    through and latency that a served victim pays. Here each stage is an ahead-of-time compiled
    executable (no cache lookup, no tracing check) taking the weights as a list of device arrays
    flattened once (no pytree walk per call), and each stage costs one host read of its
    probabilities. The compiled body is the same as in the other paths (weights are arguments, not
    constants that XLA could fold), so the answers agree with them bit for bit."""

    stages: tuple  # compiled executables: (leaves, features) -> (features, probabilities)
    leaves: list  # the weights, flattened and on the device

    def __call__(self, tile_rows: np.ndarray, thresholds: np.ndarray) -> tuple[int, np.ndarray]:
        """(exit index, probabilities f32[C]) of one validated image padded to the tile; `thresholds`
        validated float32 [K-1]."""
        leaves, h = self.leaves, tile_rows
        last = len(self.stages) - 1
        for i, fn in enumerate(self.stages):
            h, probs = fn(leaves, h)
            row = np.asarray(probs)[0]
            if i == last or row.max() >= thresholds[i]:
                return i, row
        raise AssertionError("unreachable: the last exit always answers")
