"""Architectures as plain data: the backbone units, where exits may go, and what each costs.

A backbone is a list of *units* (a conv layer, a residual block, a depthwise-separable block). An
internal classifier (IC) may follow any unit except the first (a stem) and the last (whose output
feeds the final head). Shapes and FLOPs are computed here analytically, without tracing the model.

FLOPs count multiply-adds as 2: conv 2·k²·Cin·Cout·H·W/groups, dense 2·in·out. Batch norm, ReLU,
pooling, residual additions and softmax are not counted (they are a few percent of the total).
"""

from __future__ import annotations

import dataclasses
import itertools

ARCHS = ("vgg16", "resnet56", "mobilenet")  # the SDN backbones of multi-exit victims
STUDENT_ARCHS = ("resnet18", "halfalexnet")  # the few-call stealing students (single exit by default)
ALL_ARCHS = ARCHS + STUDENT_ARCHS
MIN_EXITS, MAX_EXITS = 1, 7  # one exit: a plain single-exit network

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_MOBILENET = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)
# Half-AlexNet (the few-call papers' small student): AlexNet's five convolutions at half the filters,
# 5x5 then 3x3 kernels, a 2x2 max pool after conv 1, 2 and 5, and a 512-256 FC head: (channels, kernel, pool).
_HALF_ALEXNET = ((48, 5, True), (128, 5, True), (192, 3, False), (192, 3, False), (128, 3, True))
# Reference IC placements (unit indices, 0-based, stem included where the net has one):
# VGG16-SDN after conv layers 2, 4, 6, 7, 9, 10; ResNet56-SDN after blocks 4, 8, 12, 16, 20, 24 of 27;
# MobileNet-SDN after blocks 3, 5, 7, 9, 12 (so its reference has 6 exits, not 7).
REFERENCE_ICS = {
    "vgg16": (1, 3, 5, 6, 8, 9),
    "resnet56": (4, 8, 12, 16, 20, 24),
    "mobilenet": (3, 5, 7, 9, 12),
}


def _valid_taps(n: int, stride: int, k: int = 3) -> int:
    """Sum over output positions of the kernel taps inside the input, for 'SAME' padding on one axis."""
    out = -(-n // stride)
    pad_lo = max((out - 1) * stride + k - n, 0) // 2
    return sum(sum(1 for t in range(k) if 0 <= j * stride - pad_lo + t < n) for j in range(out))


@dataclasses.dataclass(frozen=True)
class Unit:
    """One backbone unit. kind: 'conv' (conv kxk-BN-ReLU[-maxpool], k = `kernel`), 'basic' (residual
    block of two 3x3 convs), 'dwsep' (depthwise 3x3 + pointwise 1x1, each BN-ReLU)."""

    kind: str
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    stride: int = 1
    pool: bool = False
    kernel: int = 3  # of a 'conv' unit (the others are 3x3)

    @property
    def out_size(self) -> tuple[int, int]:
        h, w = self.in_size
        h, w = -(-h // self.stride), -(-w // self.stride)
        if self.pool:
            h, w = h // 2, w // 2
        return h, w

    @property
    def flops(self) -> int:
        """FLOPs with every 3x3 tap counted, padding included (the reference's convention)."""
        return self.count_flops(padding=True)

    def count_flops(self, padding: bool = True) -> int:
        """FLOPs of the unit; padding=False counts only taps that touch the image (as XLA does)."""
        cin, cout = self.in_channels, self.out_channels
        h, w = self.in_size
        ho, wo = -(-h // self.stride), -(-w // self.stride)
        k = self.kernel if self.kind == "conv" else 3
        full = ho * wo * k * k
        taps = full if padding else _valid_taps(h, self.stride, k) * _valid_taps(w, self.stride, k)
        taps_s1 = ho * wo * 9 if padding else _valid_taps(ho, 1) * _valid_taps(wo, 1)
        if self.kind == "conv":
            return 2 * taps * cin * cout
        if self.kind == "basic":
            shortcut = 2 * cin * cout * ho * wo if (self.stride != 1 or cin != cout) else 0
            return 2 * taps * cin * cout + 2 * taps_s1 * cout * cout + shortcut
        if self.kind == "dwsep":
            return 2 * taps * cin + 2 * cin * cout * ho * wo
        raise ValueError(f"unknown unit kind {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """Everything that defines a multi-exit network; plain, hashable data (the model's config)."""

    arch: str
    num_classes: int
    num_exits: int
    width: float
    input_shape: tuple[int, int, int]
    units: tuple[Unit, ...]
    ic_units: tuple[int, ...]  # unit index after which each IC sits; len = num_exits - 1
    head_hidden: tuple[int, ...]  # hidden FC sizes of the final head (VGG: two of 512·w)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dtype: str = "float32"  # compute dtype: "float32" or "bfloat16"
    weight_bits: int | None = None  # fake-quantized weights (nets.quantize); None = float
    activation_bits: int | None = None  # fake-quantized layer inputs; None = float

    @property
    def stage_bounds(self) -> tuple[tuple[int, int], ...]:
        """(first, last + 1) unit index of every stage."""
        ends = (*[u + 1 for u in self.ic_units], len(self.units))
        starts = (0, *ends[:-1])
        return tuple(zip(starts, ends, strict=True))


def _channels(c: int, width: float, where: str) -> int:
    n = round(c * width)
    if n < 1:
        raise ValueError(
            f"width={width} leaves {where} ({c} channels at width 1) with no channels; "
            f"use width >= {0.5 / c:.4g}"
        )
    return n


def _resnet(name: str, stem: int, stages, blocks: int, width: float, channels: int, size):
    """A CIFAR-style ResNet: a 3x3 stem, then stages of basic blocks (stride 2 entering stages 2+)."""
    cin = _channels(stem, width, f"{name} stem")
    units = [Unit("conv", channels, cin, size)]
    for stage, c in enumerate(stages):
        cout = _channels(c, width, f"{name} stage {stage + 1}")
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            units.append(Unit("basic", cin, cout, size, stride=stride))
            size, cin = units[-1].out_size, cout
    return tuple(units), ()


def backbone(arch: str, width: float, input_shape) -> tuple[tuple[Unit, ...], tuple[int, ...]]:
    """The units of `arch` at `width` for `input_shape`, and the hidden sizes of its final head."""
    height, wide, channels = input_shape
    size = (height, wide)
    units = []
    if arch == "vgg16":
        cin = channels
        layers = list(_VGG16)
        for i, item in enumerate(layers):
            if item == "M":
                continue
            pool = i + 1 < len(layers) and layers[i + 1] == "M"
            cout = _channels(item, width, f"VGG16 conv {len(units) + 1}")
            units.append(Unit("conv", cin, cout, size, pool=pool))
            size, cin = units[-1].out_size, cout
        hidden = (_channels(512, width, "VGG16 FC"),) * 2
        return tuple(units), hidden
    if arch == "resnet56":  # three stages of nine basic blocks
        return _resnet("ResNet56", 16, (16, 32, 64), 9, width, channels, size)
    if arch == "mobilenet":
        cin = _channels(32, width, "MobileNet stem")
        units.append(Unit("conv", channels, cin, size))
        for i, item in enumerate(_MOBILENET):
            c, stride = item if isinstance(item, tuple) else (item, 1)
            cout = _channels(c, width, f"MobileNet block {i + 1}")
            units.append(Unit("dwsep", cin, cout, size, stride=stride))
            size, cin = units[-1].out_size, cout
        return tuple(units), ()
    if arch == "resnet18":  # the CIFAR ResNet-18: 3x3 stem, four stages of two basic blocks
        return _resnet("ResNet18", 64, (64, 128, 256, 512), 2, width, channels, size)
    if arch == "halfalexnet":
        cin = channels
        for i, (c, kernel, pool) in enumerate(_HALF_ALEXNET):
            cout = _channels(c, width, f"Half-AlexNet conv {i + 1}")
            units.append(Unit("conv", cin, cout, size, pool=pool, kernel=kernel))
            size, cin = units[-1].out_size, cout
        return tuple(units), (
            _channels(512, width, "Half-AlexNet FC"),
            _channels(256, width, "Half-AlexNet FC"),
        )
    raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ALL_ARCHS)}")


def place_ics(arch: str, units: tuple[Unit, ...], num_exits: int) -> tuple[int, ...]:
    """Unit indices of the K-1 ICs: the reference placement when K matches it, else spread evenly
    by cumulative backbone cost (the IC after the unit whose cost fraction is nearest j/K)."""
    reference = REFERENCE_ICS.get(arch)
    if reference is not None and num_exits - 1 == len(reference):
        return reference
    first = 0 if arch in ("vgg16", "halfalexnet") else 1  # VGG and AlexNet have no stem
    candidates = list(range(first, len(units) - 1))
    if num_exits - 1 > len(candidates):
        raise ValueError(f"{arch} has room for at most {len(candidates) + 1} exits; asked {num_exits}")
    total = sum(u.flops for u in units)
    cumulative, running = [], 0
    for u in units:
        running += u.flops
        cumulative.append(running / total)
    chosen: list[int] = []
    for j in range(1, num_exits):
        target = j / num_exits
        remaining_needed = num_exits - 1 - j
        pool = [c for c in candidates if (not chosen or c > chosen[-1])]
        pool = pool[: len(pool) - remaining_needed] if remaining_needed else pool
        chosen.append(min(pool, key=lambda c: abs(cumulative[c] - target)))
    return tuple(chosen)


def ic_pool(size: tuple[int, int]) -> int:
    """Pool kernel (= stride) of an IC head reading a size x size map: side // 4 when side >= 4."""
    side = min(size)
    return side // 4 if side >= 4 else 1


def ic_flops(unit: Unit, num_classes: int) -> int:
    h, w = unit.out_size
    k = ic_pool((h, w))
    return 2 * (h // k) * (w // k) * unit.out_channels * num_classes


def head_flops(spec: NetSpec) -> int:
    last = spec.units[-1]
    if spec.head_hidden:  # an FC stack on the flattened map (VGG, Half-AlexNet)
        h, w = last.out_size
        sizes = (h * w * last.out_channels, *spec.head_hidden, spec.num_classes)
        return sum(2 * a * b for a, b in itertools.pairwise(sizes))
    return 2 * last.out_channels * spec.num_classes


def exit_flops(spec: NetSpec, padding: bool = True) -> list[int]:
    """Cumulative FLOPs of reaching and evaluating each exit (earlier ICs included, as they ran)."""
    out, spent = [], 0
    for i, (start, end) in enumerate(spec.stage_bounds):
        spent += sum(u.count_flops(padding) for u in spec.units[start:end])
        head = (
            head_flops(spec) if i == spec.num_exits - 1 else ic_flops(spec.units[end - 1], spec.num_classes)
        )
        spent += head
        out.append(spent)
    return out
