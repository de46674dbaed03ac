"""PyTorch reference of the SDN multi-exit networks, for same-machine speed comparisons.

The same architectures as mexjax.nets (VGG16-BN / ResNet56 / MobileNet SDN, reference IC placement,
width multiplier, mixed max/avg-pool IC heads), written in plain PyTorch the way the SDN reference code
runs them: eager mode, one module per stage. It is a benchmark baseline only (never imported by mexjax).
Run it in its own environment:

    bash scripts/torch_reference.sh [...]     # sets up .venv-torch (CPU-only torch 2.13.0) on first use
    .venv-torch/bin/python benchmarks/torch_reference.py [--archs ...] [--widths 1.0 0.25] [--batch 128]
    .venv-torch/bin/python benchmarks/torch_reference.py --deepsloth --archs resnet56 vgg16 --batch 64

Measures what benchmarks/bench_nets.py measures (train img/s, eval img/s of all exits, batch-1 latency
to the first and the last exit) and writes benchmarks/results/torch-<host>-<date>.json; with
--deepsloth, what benchmarks/bench_slowdown.py measures (30-step L∞ DeepSloth PGD, images/s); with
--breakdown, the pieces of one train step that benchmarks/bench_train_step.py times.
"""

from __future__ import annotations

import argparse
import json
import platform

import results_file
import torch
from timing import median_seconds
from torch import nn
from torch.nn import functional as F

VGG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
MOBILENET = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)
ICS = {"vgg16": (1, 3, 5, 6, 8, 9), "resnet56": (4, 8, 12, 16, 20, 24), "mobilenet": (3, 5, 7, 9, 12)}


def ch(c, w):
    return max(1, round(c * w))


class ConvUnit(nn.Module):
    def __init__(self, cin, cout, pool=False):
        super().__init__()
        self.conv, self.bn, self.pool = (
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            pool,
        )

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.max_pool2d(x, 2) if self.pool else x
        return x, x


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        pre = y + (x if self.short is None else self.short(x))
        return F.relu(pre), pre


class DwSep(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw, self.b1 = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin)
        self.pw, self.b2 = nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.relu(self.b2(self.pw(F.relu(self.b1(self.dw(x))))))
        return x, x


class IC(nn.Module):
    def __init__(self, channels, side, classes):
        super().__init__()
        self.k = side // 4 if side >= 4 else 1
        self.alpha = nn.Parameter(torch.zeros(()))
        self.fc = nn.Linear(channels * (side // self.k) ** 2, classes)

    def forward(self, x):
        if self.k > 1:
            a = torch.sigmoid(self.alpha)
            x = a * F.max_pool2d(x, self.k) + (1 - a) * F.avg_pool2d(x, self.k)
        return self.fc(x.flatten(1))


def units_of(arch, w):
    units, sides, side = [], [], 32
    if arch == "vgg16":
        cin = 3
        for i, item in enumerate(VGG):
            if item == "M":
                continue
            pool = i + 1 < len(VGG) and VGG[i + 1] == "M"
            units.append(ConvUnit(cin, ch(item, w), pool))
            cin, side = ch(item, w), side // 2 if pool else side
            sides.append((cin, side))
        return units, sides
    if arch == "resnet56":
        cin = ch(16, w)
        units.append(ConvUnit(3, cin))
        sides.append((cin, side))
        for s, c in enumerate((16, 32, 64)):
            for b in range(9):
                stride = 2 if s > 0 and b == 0 else 1
                units.append(Basic(cin, ch(c, w), stride))
                cin, side = ch(c, w), side // stride
                sides.append((cin, side))
        return units, sides
    cin = ch(32, w)
    units.append(ConvUnit(3, cin))
    sides.append((cin, side))
    for item in MOBILENET:
        c, stride = item if isinstance(item, tuple) else (item, 1)
        units.append(DwSep(cin, ch(c, w), stride))
        cin, side = ch(c, w), side // stride
        sides.append((cin, side))
    return units, sides


class SDN(nn.Module):
    def __init__(self, arch, width, classes=10):
        super().__init__()
        units, sides = units_of(arch, width)
        self.units = nn.ModuleList(units)
        self.ic_at = ICS[arch]
        self.ics = nn.ModuleList(IC(*sides[u], classes) for u in self.ic_at)
        c, side = sides[-1]
        if arch == "vgg16":
            h = ch(512, width)
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(c * side * side, h), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(h, h), nn.ReLU(), nn.Dropout(0.5), nn.Linear(h, classes),
            )  # fmt: skip
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))
        ends = [u + 1 for u in self.ic_at] + [len(units)]
        self.bounds = list(zip([0, *ends[:-1]], ends, strict=True))

    def stage(self, x, i):
        tap = x
        for unit in self.units[self.bounds[i][0] : self.bounds[i][1]]:
            x, tap = unit(x)
        return x, (self.head(x) if i == len(self.bounds) - 1 else self.ics[i](tap))

    def forward(self, x):
        outs = []
        for i in range(len(self.bounds)):
            x, out = self.stage(x, i)
            outs.append(out)
        return outs


timed = median_seconds


def bench(arch, width, batch, steps):
    torch.manual_seed(0)
    model = SDN(arch, width)
    x = torch.rand(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    weights = [0.01] * len(model.ics) + [1.0]

    def train_step():
        model.train()
        opt.zero_grad()
        loss = sum(w * F.cross_entropy(o, y) for w, o in zip(weights, model(x), strict=True))
        loss.backward()
        opt.step()

    train_step()
    train_s = timed(train_step, steps)
    model.eval()
    with torch.no_grad():
        model(x)
        eval_s = timed(lambda: model(x), steps)
        one = x[:1]
        latency = []
        for upto in (0, len(model.bounds) - 1):

            def run(upto=upto):
                h = one
                for i in range(upto + 1):
                    h, out = model.stage(h, i)
                return out

            run()
            latency.append(timed(run, max(20, 4 * steps)) * 1e3)
    return {
        "arch": arch, "width": width, "batch": batch, "train_img_s": batch / train_s,
        "eval_img_s": batch / eval_s, "batch1_first_ms": latency[0], "batch1_full_ms": latency[1],
    }  # fmt: skip


def _without_bn(model):
    """The same model with every batch norm replaced by the identity."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, nn.Identity())
        else:
            _without_bn(child)
    return model


def _time_pieces(model, x, y, steps, names):
    """ms per call of the named pieces of one train step of `model`, and of its eval forward pass."""
    weights = [0.01] * len(model.ics) + [1.0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def loss():
        return sum(w * F.cross_entropy(o, y) for w, o in zip(weights, model(x), strict=True))

    def forward():
        with torch.no_grad():
            loss()

    def forward_backward():
        opt.zero_grad()
        loss().backward()

    def step():
        forward_backward()
        opt.step()

    pieces = {"forward": forward, "forward_backward": forward_backward, "step": step, "update": opt.step}
    model.train()
    step()
    times = {}
    for name in names:
        pieces[name]()
        times[name] = timed(pieces[name], steps) * 1e3
    model.eval()
    with torch.no_grad():
        model(x)
        times["eval"] = timed(lambda: model(x), steps) * 1e3
    return times


def breakdown(arch, width, batch, steps):
    """The pieces benchmarks/bench_train_step.py times, in eager PyTorch (ms per call)."""
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    row = {"arch": arch, "width": width, "batch": batch}
    full = _time_pieces(SDN(arch, width), x, y, steps, ("forward", "forward_backward", "step", "update"))
    plain = _time_pieces(_without_bn(SDN(arch, width)), x, y, steps, ("forward_backward",))
    row.update({f"{name}_ms": value for name, value in full.items()})
    row.update({f"no_bn_{name}_ms": value for name, value in plain.items()})
    row["backward_over_forward"] = (row["forward_backward_ms"] - row["forward_ms"]) / row["forward_ms"]
    row["train_img_s"] = batch / row["step_ms"] * 1e3
    return row


def deepsloth(arch, width, batch, steps, repeats):
    """DeepSloth L∞ PGD (ε = 8/255, step 2/255) on a random-weight SDN in eval mode: images/s."""
    torch.manual_seed(0)
    model = SDN(arch, width).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, 32, 32)
    eps, step = 8 / 255, 2 / 255

    def attack():
        delta = torch.zeros_like(x)
        for _ in range(steps):
            delta.requires_grad_(True)
            outs = model((x + delta).clamp(0, 1))
            loss = sum(-F.log_softmax(o, dim=1).mean(dim=1).sum() for o in outs[:-1])  # CE(uniform, .)
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta - step * grad.sign()).clamp(-eps, eps)
                delta = (x + delta).clamp(0, 1) - x
        return (x + delta).clamp(0, 1)

    attack()
    seconds = timed(attack, repeats)
    return {"arch": arch, "width": width, "batch": batch, "steps": steps, "img_s": batch / seconds,
            "seconds": seconds}  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet56", "mobilenet"])
    parser.add_argument("--widths", nargs="+", type=float, default=[1.0, 0.25])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--deepsloth", action="store_true", help="time 30-step DeepSloth PGD instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true", help="time the pieces of one train step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs:
        for width in args.widths:
            if args.deepsloth:
                row = deepsloth(arch, width, args.batch, 30, args.repeats)
            elif args.breakdown:
                row = breakdown(arch, width, args.batch, args.steps)
            else:
                row = bench(arch, width, args.batch, args.steps)
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    kind = "torch-deepsloth" if args.deepsloth else "torch-breakdown" if args.breakdown else "torch"
    results_file.write(kind, machine, rows=rows)


if __name__ == "__main__":
    main()
