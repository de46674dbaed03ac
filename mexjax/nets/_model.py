"""The multi-exit network: one Flax module, used functionally through `MultiExitNet`.

One definition serves every use. `MultiExitNet.apply` runs all exits (training, evaluation);
`MultiExitNet.stage(i)` is the jit-compiled function of stage i alone, what real early exit runs.
The full forward pass is literally the stages called in order, so both agree.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mexjax.nets import _arch, _quant
from mexjax.nets._layers import BackboneUnit, FinalHead, ICHead

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_INPUT_DTYPES = (np.uint8, np.float32, jnp.bfloat16, np.float16)


class MultiExitModule(nn.Module):
    spec: _arch.NetSpec

    def setup(self):
        dtype = _DTYPES[self.spec.dtype]
        self.units = [BackboneUnit(u, dtype) for u in self.spec.units]
        self.ics = [ICHead(self.spec.num_classes, dtype) for _ in self.spec.ic_units]
        self.head = FinalHead(self.spec.num_classes, self.spec.head_hidden, dtype)

    def _normalize(self, x):
        mean = jnp.asarray(self.spec.mean, jnp.float32).reshape(1, 1, 1, -1)
        std = jnp.asarray(self.spec.std, jnp.float32).reshape(1, 1, 1, -1)
        return ((x.astype(jnp.float32) - mean) / std).astype(_DTYPES[self.spec.dtype])

    def stage(self, x, index: int, train: bool = False):
        """Stage `index`: features in -> (features out, logits of exit `index`)."""
        spec = self.spec
        if index == 0:
            x = self._normalize(x)
        start, end = spec.stage_bounds[index]
        tap = x
        for unit in self.units[start:end]:
            x, tap = unit(x, train)
        if index == spec.num_exits - 1:
            return x, self.head(x, train)
        return x, self.ics[index](tap)

    def features(self, x):
        """Penultimate features of the final exit (evaluation mode): what the last layer reads."""
        x = self._normalize(x)
        for unit in self.units:
            x, _ = unit(x, False)
        return self.head(x, False, features=True)

    def __call__(self, x, upto: int | None = None, train: bool = False):
        logits = []
        for index in range(self.spec.num_exits if upto is None else upto):
            x, out = self.stage(x, index, train)
            logits.append(out)
        return tuple(logits)


@dataclasses.dataclass(frozen=True, eq=False)
class MultiExitNet:
    """A multi-exit network: its spec (plain data) and pure functions over its variables.

    Variables are a dict {"params": ..., "batch_stats": ...} of pytrees. Inputs are NHWC images,
    float in [0, 1] (uint8 in [0, 255] is accepted and scaled); the network normalizes them itself
    with `spec.mean` / `spec.std`, so attacks can work in pixel space.
    """

    spec: _arch.NetSpec

    def __post_init__(self):
        _check_spec(self.spec)
        module = MultiExitModule(self.spec)
        object.__setattr__(self, "module", module)
        stages, forward, features, runner_programs = _programs(module)
        object.__setattr__(self, "_stages", stages)
        object.__setattr__(self, "_forward", forward)
        object.__setattr__(self, "_features", features)
        object.__setattr__(self, "_runner_programs", runner_programs)  # shared by runners over this spec

    @property
    def num_exits(self) -> int:
        return self.spec.num_exits

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape

    def init(self, key: jax.Array) -> dict:
        """Fresh variables {"params", "batch_stats"} for this network."""
        return _init(self.module, key)

    def abstract_variables(self) -> dict:
        """Shapes and dtypes of the variables (jax.ShapeDtypeStruct leaves), without computing them;
        with the "quant" activation ranges of a net that quantizes activations."""
        abstract = jax.eval_shape(functools.partial(_init_impl, self.module), jax.random.key(0))
        if self.spec.activation_bits is not None:
            dummy = jax.ShapeDtypeStruct((1, *self.spec.input_shape), jnp.float32)
            observe = functools.partial(_quant.observe, self.module, self.spec)
            abstract["quant"] = jax.eval_shape(observe, abstract, dummy)
        return abstract

    def apply(self, variables, x, *, upto=None, train=False, dropout_key=None):
        """Logits of every exit (or the first `upto`): tuple of f32[B, classes].

        With train=True also returns the updated batch statistics: (logits, batch_stats).
        Traceable: call it inside jit/grad. Use `check_inputs` at the edges for clear errors.
        """
        if not train:
            return _quant.apply(self.module, self.spec, variables, x, upto=upto, train=False)
        rngs = {"dropout": dropout_key} if dropout_key is not None else {}
        logits, updates = _quant.apply(
            self.module, self.spec, variables, x, upto=upto, train=True, rngs=rngs, mutable=["batch_stats"]
        )
        return logits, updates["batch_stats"]

    def logits(self, variables, x) -> tuple[jax.Array, ...]:
        """All exits at once in evaluation mode, jit-compiled, with input checks.

        An empty batch [0, H, W, C] gives one empty f32[0, classes] per exit."""
        x = self.check_inputs(x)
        if x.shape[0] == 0:
            return tuple(jnp.zeros((0, self.num_classes), jnp.float32) for _ in range(self.num_exits))
        return self._forward(variables, x)

    def features(self, variables, x, *, batch_size: int = 256) -> np.ndarray:
        """Penultimate features f32[N, D] of the final exit (its last layer's input), in batches.

        The latent space of few-call stealing: proxies are selected and pseudo-labelled in it."""
        x = self.check_inputs(x)
        out = [
            np.asarray(self._features(variables, x[i : i + batch_size])) for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.feature_size), np.float32)

    @property
    def feature_size(self) -> int:
        """D of `features`: the width of the final head's input to its last layer."""
        return self.spec.head_hidden[-1] if self.spec.head_hidden else self.spec.units[-1].out_channels

    def stage(self, index: int):
        """The jit-compiled stage `index`: (variables, features) -> (features, logits f32[B, C]).

        Stage 0 takes images (as `check_inputs` returns them)."""
        if not 0 <= index < self.spec.num_exits:
            raise IndexError(f"stage {index} does not exist; this net has {self.spec.num_exits} exits")
        return self._stages[index]

    def runner(self, *, tile: int = 1, buckets: tuple[int, ...] = (8, 32, 128, 512)):
        """An `exits.ExitRunner` over this net's stages that validates its inputs."""
        from mexjax.exits import ExitRunner

        stages = tuple(self.stage(i) for i in range(self.num_exits))
        return ExitRunner(
            stages, tile=tile, buckets=buckets, check=self.check_inputs, compiled=self._runner_programs
        )

    def exit_flops(self) -> list[int]:
        return _arch.exit_flops(self.spec)

    def check_inputs(self, x) -> jax.Array:
        """Validate a batch of images and return it as float32 in [0, 1] (uint8 scaled by 1/255).

        uint8 images may hold any value; float images must be finite and within [0, 1]."""
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 4 or tuple(shape[1:]) != self.spec.input_shape:
            raise ValueError(
                f"expected images of shape [B, {', '.join(map(str, self.spec.input_shape))}] (NHWC); got "
                f"{shape}. Fit them with mexjax.data.to_input_shape(images, {self.spec.input_shape})."
            )
        dtype = np.dtype(x.dtype)
        if dtype not in [np.dtype(d) for d in _INPUT_DTYPES]:
            raise TypeError(
                f"images must be uint8 in [0, 255] or float32/bfloat16/float16 in [0, 1]; got {dtype}"
            )
        if dtype == np.uint8:
            if isinstance(x, np.ndarray):  # on the host: no per-batch-size compile of the conversion
                return jax.device_put(x.astype(np.float32) / np.float32(255.0))
            return jnp.asarray(x).astype(jnp.float32) / 255.0
        x = jnp.asarray(x).astype(jnp.float32)
        if x.size == 0:
            return x
        nan, inf, lo, hi = (float(v) for v in _float_summary(x))
        if nan:
            raise ValueError("images contain NaN: check the preprocessing that produced them")
        if inf:
            raise ValueError("images contain +-inf: float images must be finite and within [0, 1]")
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float images must lie within [0, 1]; these span [{lo:.6g}, {hi:.6g}]. Scale uint8-range "
                "values by 1/255 (or pass the uint8 images as they are: they are scaled here)"
            )
        return x


@jax.jit
def _float_summary(x):
    """(any NaN, any +-inf, min, max of the finite values) of a float32 batch, in one device call."""
    finite = jnp.isfinite(x)
    lo = jnp.min(jnp.where(finite, x, jnp.inf))
    hi = jnp.max(jnp.where(finite, x, -jnp.inf))
    nan = jnp.any(jnp.isnan(x)).astype(jnp.float32)
    inf = jnp.any(jnp.isinf(x)).astype(jnp.float32)
    return jnp.stack([nan, inf, lo, hi])


def _init_impl(module, key):
    dummy = jnp.zeros((1, *module.spec.input_shape), jnp.float32)
    variables = module.init({"params": key}, dummy, train=False)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


# Initialization runs once per net: compile it with the backend's fastest (least optimizing) settings.
_init = jax.jit(_init_impl, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0})


@functools.lru_cache(maxsize=64)
def _programs(module: MultiExitModule):
    """The jit-compiled functions of one architecture (stages, all exits, features, and a dict for the
    exit runners' programs), shared by every MultiExitNet of an equal spec: a net rebuilt from its
    spec (a notebook cell run again, a loaded checkpoint, the next experiment cell) reuses what the
    first one compiled instead of compiling it again."""
    stages = tuple(jax.jit(functools.partial(_apply_stage, module, i)) for i in range(module.spec.num_exits))
    forward = jax.jit(functools.partial(_apply_eval, module))
    features = jax.jit(functools.partial(_apply_features, module))
    return stages, forward, features, {}


def _apply_stage(module, index, variables, x):
    return _quant.apply(module, module.spec, variables, x, index, train=False, method=MultiExitModule.stage)


def _apply_features(module, variables, x):
    return _quant.apply(module, module.spec, variables, x, method=MultiExitModule.features)


def _apply_eval(module, variables, x):
    return _quant.apply(module, module.spec, variables, x, train=False)


def build(
    arch: str,
    *,
    num_classes: int,
    num_exits: int,
    width: float = 1.0,
    input_shape=(32, 32, 3),
    mean=None,
    std=None,
    dtype: str = "float32",
) -> MultiExitNet:
    """Build an SDN-style multi-exit network.

    Args:
      arch: "vgg16", "resnet56" or "mobilenet" (SDN backbones), or "resnet18" / "halfalexnet" (the
        few-call stealing students, usually with one exit).
      num_classes: classes of every exit.
      num_exits: K in 1..7, the final head included (1: a plain single-exit net). The reference IC
        placement is used when K matches it (7 for VGG16/ResNet56, 6 for MobileNet); otherwise ICs
        spread evenly by cost.
      width: multiplies every channel count (0.25 gives CPU-sized victims of the same architecture).
      input_shape: (H, W, C) of the images.
      mean, std: per-channel normalization in [0, 1] units (default 0.5 / 0.25).
      dtype: compute dtype, "float32" or "bfloat16" (parameters stay float32).
    """
    if arch not in _arch.ALL_ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(_arch.ALL_ARCHS)}")
    if not isinstance(num_exits, int) or not _arch.MIN_EXITS <= num_exits <= _arch.MAX_EXITS:
        raise ValueError(f"num_exits must be an int in {_arch.MIN_EXITS}..{_arch.MAX_EXITS}; got {num_exits}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes}")
    if not width > 0:
        raise ValueError(f"width must be positive; got {width}")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C); got {input_shape}")
    if min(input_shape[:2]) < 32:
        raise ValueError(f"input side must be at least 32 (five 2x down-samplings); got {input_shape}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
    channels = input_shape[2]
    mean = _per_channel(0.5 if mean is None else mean, channels, "mean")
    std = _per_channel(0.25 if std is None else std, channels, "std")
    _check_normalization(mean, std)
    units, hidden = _arch.backbone(arch, float(width), input_shape)
    ics = _arch.place_ics(arch, units, num_exits)
    spec = _arch.NetSpec(
        arch, num_classes, num_exits, float(width), input_shape, units, ics, hidden, mean, std, dtype
    )
    return MultiExitNet(spec)


def _per_channel(value, channels: int, name: str) -> tuple[float, ...]:
    try:
        values = np.broadcast_to(np.asarray(value, np.float64), (channels,))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be one number or one per channel ({channels}); got {value!r}") from err
    return tuple(float(v) for v in values)


def _check_normalization(mean, std) -> None:
    """Normalization constants that keep images apart: finite means, finite positive stds (a NaN
    would give every image the same logits)."""
    if len(mean) != len(std) or not all(np.isfinite(m) for m in mean):
        raise ValueError(f"mean must be finite, one value per channel; got {mean}")
    if not all(np.isfinite(s) and s > 0 for s in std):
        raise ValueError(f"std must be finite and positive, one value per channel; got {std}")


def _check_spec(spec: _arch.NetSpec) -> None:
    if spec.dtype not in _DTYPES:
        raise ValueError(f"the spec's compute dtype must be one of {', '.join(_DTYPES)}; got {spec.dtype!r}")
    _check_normalization(tuple(spec.mean), tuple(spec.std))
    if len(spec.mean) != spec.input_shape[2]:
        raise ValueError(
            f"the spec has {len(spec.mean)} mean/std values for {spec.input_shape[2]} input channels"
        )


def from_spec(spec: _arch.NetSpec) -> MultiExitNet:
    return MultiExitNet(spec)


def quantize(
    net: MultiExitNet, *, weight_bits: int | None = 8, activation_bits: int | None = 8
) -> MultiExitNet:
    """The same network with fake-quantized weights and/or activations (None keeps that part float).

    The float net's variables fit the quantized one as they are; a net that quantizes activations
    needs their ranges first (`calibrate`). PTQ = quantize + calibrate; QAT = then train the result."""
    weight_bits = _quant.check_bits(weight_bits, "weight_bits")
    activation_bits = _quant.check_bits(activation_bits, "activation_bits")
    spec = dataclasses.replace(net.spec, weight_bits=weight_bits, activation_bits=activation_bits)
    return MultiExitNet(spec)


def _widen(a, b):
    return jnp.stack([jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1])])


@functools.partial(jax.jit, static_argnums=0)
def _observe(module, variables, x):
    return _quant.observe(module, module.spec, variables, x)


def calibrate(net: MultiExitNet, variables, images, *, batch_size: int = 128) -> dict:
    """Observe the input range of every quantized layer on `images` (uint8 or [0, 1] floats, a few
    batches of training data) and return the variables with those ranges as their "quant" collection.

    The range is the running min / max over the batches (no outliers clipped): at 8 bits it covers
    every calibration value at a resolution of range / 255."""
    if net.spec.activation_bits is None:
        raise ValueError("this net keeps activations in float: nothing to calibrate (see nets.quantize)")
    n = len(images)
    if n == 0:
        raise ValueError("the calibration set is empty: pass a few batches of training images")
    ranges = None
    for start in range(0, n, batch_size):
        batch = net.check_inputs(np.asarray(images[start : start + batch_size]))
        seen = _observe(net.module, variables, batch)
        ranges = seen if ranges is None else jax.tree_util.tree_map(_widen, ranges, seen)
    if any(bool(jnp.any(~jnp.isfinite(r))) for r in jax.tree_util.tree_leaves(ranges)):
        raise ValueError("calibration saw NaN or infinite activations: check the weights and the images")
    return {**{k: v for k, v in variables.items() if k != "quant"}, "quant": ranges}
