"""One process of a jax.distributed training run on CPU (tests/train/test_distributed.py starts it).

    python tests/train/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz

With NUM_PROCESSES 1 it trains alone (no jax.distributed), the reference for the same global batch."""

import sys

import jax
import numpy as np


def main(process_id: int, num_processes: int, port: int, out: str):
    if num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id)
    from mexjax import data, nets, train

    rng = np.random.default_rng(0)
    labels = (np.arange(64) % 4).astype(np.int32)
    images = rng.integers(0, 40, (64, 32, 32, 3)).astype(np.int32)
    for i, y in enumerate(labels):
        r, c = divmod(int(y), 2)
        images[i, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] += 180
    toy = data.Dataset(images.clip(0, 255).astype(np.uint8), labels, tuple("abcd"))
    net = nets.build("vgg16", num_classes=4, num_exits=2, width=0.0625)
    config = train.TrainConfig(epochs=2, batch_size=16, learning_rate=0.05, seed=3)
    variables, history = train.fit(net, toy, config, progress=False)
    flat = {"/".join(str(k) for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]}  # fmt: skip
    flat["devices"] = np.array([jax.device_count(), jax.process_count()])
    flat["train_loss"] = np.array([h["train_loss"] for h in history])
    if process_id == 0:
        np.savez(out, **flat)
    else:  # every process holds the same replicated result
        np.savez(out.replace(".npz", f"_{process_id}.npz"), **flat)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
