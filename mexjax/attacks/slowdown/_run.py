"""`python -m mexjax slowdown`: attack a saved victim's test images and report what it costs the victim."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from mexjax import data, defenses, metrics, nets, oracle
from mexjax.attacks.slowdown._deepsloth import SlothConfig, apply_universal, attack, universal

DEFENSES = {
    "none": None,
    "jpeg90": lambda im: defenses.jpeg(im, 90),
    "jpeg75": lambda im: defenses.jpeg(im, 75),
    "smooth": lambda im: defenses.smooth(im),
}


def outcome(net, variables, thresholds, images, labels) -> dict:
    """Early-exit accuracy, efficacy, FLOPs share and exit histogram under the victim's thresholds."""
    scores = metrics.evaluate(oracle.DeployedModel(net, variables, thresholds), images, labels)
    exit_ids = np.repeat(np.arange(net.num_exits), scores["exit_histogram"])  # the curve needs shares only
    return {
        "accuracy": scores["accuracy"],
        "efficacy": scores["efficacy"],
        "flops_ratio": scores["flops_ratio"],
        "exit_histogram": scores["exit_histogram"],
        "curve": [c.tolist() for c in metrics.efficacy_curve(exit_ids, nets.exit_flops(net))],
    }


def run(checkpoint, dataset: str, out_dir, *, split="test", images=1000, norm="linf", eps=8 / 255,
        step=2 / 255, steps=30, defense="none", data_dir=None, seed=0, progress=True) -> dict:  # fmt: skip
    """Attack `images` images of `dataset`/`split` with DeepSloth (norm linf, l2 or universal) on the
    model saved at `checkpoint`, optionally through an input defense; write result.json,
    adversarial.npy and efficacy.png to out_dir and return the result."""
    if defense not in DEFENSES:
        raise ValueError(f"defense must be one of {sorted(DEFENSES)}; got {defense!r}")
    net, variables, thresholds, _ = nets.load(checkpoint)
    if thresholds is None:
        raise ValueError(f"{checkpoint} has no thresholds: save the victim with its thresholds")
    ds = data.load(dataset, split, data_dir=data_dir)
    ds = data.subset(ds, jax.random.key(seed), min(images, len(ds)))
    ds = data.fit_dataset(ds, net.input_shape)
    x = ds.images.astype(np.float32) / 255.0
    started = time.perf_counter()
    if norm == "universal":
        delta = universal(net, variables, x, eps=eps, step=step, epochs=steps, progress=progress)
        adv = apply_universal(x, delta)
    else:
        adv = attack(
            net, variables, x, SlothConfig(norm=norm, eps=eps, step=step, steps=steps), progress=progress
        )
    seconds = time.perf_counter() - started
    seen = adv if DEFENSES[defense] is None else DEFENSES[defense](adv)
    result = {
        "checkpoint": str(checkpoint),
        "dataset": f"{dataset}/{split}",
        "images": len(x),
        "attack": {"norm": norm, "eps": eps, "step": step, "steps": steps, "seconds": round(seconds, 2)},
        "defense": defense,
        "clean": outcome(net, variables, thresholds, x, ds.labels),
        "attacked": outcome(net, variables, thresholds, seen, ds.labels),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "adversarial.npy", adv)
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    attacked_name = f"DeepSloth {norm}" + ("" if defense == "none" else f" + {defense}")
    plot_efficacy({"clean": result["clean"], attacked_name: result["attacked"]}, out_dir / "efficacy.png")
    return result


def efficacy_figure(outcomes: dict, *, pyplot: bool = True):
    """Efficacy curves and exit histograms side by side, one colour per outcome. pyplot=True makes a
    pyplot figure (shown inline in a notebook); False a bare Figure for saving (no backend involved)."""
    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(9, 3.4))
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.4))
    left, right = fig.subplots(1, 2)
    width = 0.8 / max(len(outcomes), 1)
    for i, (name, o) in enumerate(outcomes.items()):
        x, y = o["curve"]
        left.plot(x, y, label=f"{name} (efficacy {o['efficacy']:.2f})")
        hist = np.asarray(o["exit_histogram"])
        right.bar(
            np.arange(1, len(hist) + 1) + (i - (len(outcomes) - 1) / 2) * width, hist, width, label=name
        )
    left.set(xlabel="normalized cost (FLOPs / full network)", ylabel="share of samples exited", xlim=(0, 1))
    right.set(xlabel="exit", ylabel="samples", title="exits taken")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_efficacy(outcomes: dict, path) -> None:
    """Save `efficacy_figure(outcomes, pyplot=False)` as an image at `path`."""
    efficacy_figure(outcomes, pyplot=False).savefig(path, dpi=110)
