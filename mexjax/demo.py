"""The CPU-sized demo behind the README's main command.

For now it exercises what exists: every offline dataset is loaded (decoded once, then cached),
fitted to a common victim input shape, turned into query sets, and augmented on the device; a figure
of samples and a JSON summary are written. It grows into the full stealing pipeline as the library does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from mexjax import data

DEMO_SETS = (("cifar10", "test"), ("gtsrb", "test"), ("tinyimagenet", "val"), ("fashion_mnist", "test"))
VICTIM_INPUT = (32, 32, 3)


def run(out_dir: Path, data_dir=None, seed: int = 0) -> dict:
    """Run the demo; returns (and writes to out_dir/summary.json) what it measured."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    summary = {"datasets": {}, "skipped": {}}
    rows = []
    for name, split in DEMO_SETS:
        start = time.perf_counter()
        try:
            ds = data.load(name, split, data_dir=data_dir)
        except data.DataError as err:
            summary["skipped"][f"{name}/{split}"] = str(err)
            print(f"[demo] skipping {name}/{split}: {err}")
            continue
        seconds = time.perf_counter() - start
        key, pick_key = jax.random.split(key)
        sample = data.subset(ds, pick_key, 8)
        fitted = data.to_input_shape(sample.images, VICTIM_INPUT)
        mean, std = data.channel_stats(ds.images[:5000])
        summary["datasets"][f"{name}/{split}"] = {
            "images": len(ds),
            "shape": list(ds.image_shape),
            "classes": ds.num_classes,
            "load_seconds": round(seconds, 3),
            "channel_mean": [round(float(m), 4) for m in mean],
            "channel_std": [round(float(s), 4) for s in std],
        }
        rows.append((f"{name}/{split}", np.asarray(fitted)))

    key, noise_key, aug_key = jax.random.split(key, 3)
    noise = data.noise_images(noise_key, 8, VICTIM_INPUT)
    rows.append(("uniform noise queries", noise))
    if rows:
        augmented = jax.jit(data.augment)(aug_key, rows[0][1])
        rows.append((f"{rows[0][0]} augmented (crop+flip, jit)", np.asarray(augmented)))
    figure = out_dir / "datasets.png"
    _plot_rows(rows, figure)
    summary["figure"] = str(figure)
    summary["devices"] = [str(d) for d in jax.devices()]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _plot_rows(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 1.1, len(rows) * 1.25), squeeze=False)
    for r, (title, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c])
        axes[r, 0].set_title(title, loc="left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
