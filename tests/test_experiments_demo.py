"""The demo's experiment scripts: the claim count of repeated runs, the timing-passes measurement."""

import jax
import numpy as np

from experiments import demo_passes, demo_runs
from mexjax import demo, exits, nets


def _run(seed, met: set, load=1.0):
    row = {"accuracy": 0.5, "closeness": 0.4, "closeness_queries": 0.3, "mean_flops": 2e6,
           "victim_accuracy": 0.8, "victim_mean_flops": 1.5e6}  # fmt: skip
    return {
        "seed": seed,
        "seconds": 500.0 + seed,
        "load_average_before": [load, 0, 0],
        "load_average_after": [load + 0.5, 0, 0],
        "claims": {name: name in met for name in demo.CLAIMS},
        "attack": {
            "estimated_exits": 4,
            "victim_exits": 4,
            "exit_prediction": {"aligned_balanced_accuracy": 0.97},
            "table": {"ours": row, "knockoff": row},
        },
    }


def test_runs_table_counts_each_claim():
    runs = [_run(0, {"exits_found", "exit_accuracy"}), _run(1, {"exits_found"}), {"seed": 2, "error": "x",
            "seconds": 700.0, "load": "one"}]  # fmt: skip
    text = demo_runs.table(runs)
    assert f"| {demo.CLAIMS['exits_found']} | 2 of 3 |" in text
    assert f"| {demo.CLAIMS['exit_accuracy']} | 1 of 3 |" in text
    assert f"| {demo.CLAIMS['utility']} | 0 of 3 |" in text
    assert "| the whole command within 10 minutes | 2 of 3 |" in text
    assert "| 0 | 1.0 / 1.5 | 500.0 | 4 (4) | 0.970 |" in text and "error: x" in text


def test_passes_measurement_reads_a_tiny_victim():
    net = nets.build("vgg16", num_classes=4, num_exits=3, width=0.125)
    variables = net.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    conf = np.asarray(exits.confidence(net.runner().all_exits(variables, images)))
    thresholds = np.array([np.quantile(conf[0], 0.5), np.quantile(conf[1], 0.5)], np.float32)
    row = demo_passes.measure(net, variables, thresholds, images, passes=2, load="quiet")
    assert row["queries"] == 60 and row["passes"] == 2 and row["victim_exits"] == 3
    assert sum(row["true_exit_histogram"]) == 60 and len(row["median_ms_per_exit"]) >= 2
