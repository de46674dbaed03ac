"""Training multi-exit networks: losses, the data-parallel train loop, evaluation.

Public API:
The loop
  fit(net, train_set, config, *, workdir=None, eval_set=None) -> (variables, history)
                       jit-compiled data-parallel steps; checkpoint per epoch, resumed bit-identically
  TrainConfig          a run's configuration as plain data (recipe, epochs, batch, learning rate, ...)
  TrainState           the train state pytree (step, params, batch_stats, opt_state, fixed)
  RECIPES              "sdn" (SGD, SDN exit weights), "ic_only" (frozen backbone), "adam" (exits alike)
  make_train_step(net, tx, config, loss=None)   the pure step: (state, batch, ...) -> (state, metric sums)
  make_optimizer(config, steps_per_epoch, params)   the recipe's optax optimizer
  learning_rate_at(config, epoch) / set_learning_rate(opt_state, lr)   step decay, set per epoch on the host
  loss_weights(config, epoch, K) -> f32[K]     the recipe's weight of every exit at an epoch
  predict(net, variables, images) -> f32[K, N, C]   probabilities at every exit
  read_metrics(path) -> [record]               a run's metrics.jsonl (a cut last line is skipped)
  MetricsFileError                             a metrics.jsonl holds a corrupt record before its last line
Per-example losses ([B]; `fit(loss=...)` takes any (logits, labels, extras, weights) -> f32[B])
  cross_entropy / soft_cross_entropy / kl_divergence   against labels; against probabilities; KL
  sdn_loss(logits, labels, weights) / default_loss     Σ_i w_i CE(exit i); it as fit's default loss
  sdn_weights(epoch, epochs, K) / sdn_max_weights(K - 1)   τ_i = min(C_i, 0.01 + e·C_i/E); the C_i
Sharding
  data_mesh(devices=None) -> Mesh              1-D mesh "data" over every device of every process
  batch_sharding(mesh) / replicated(mesh)      batches split over "data"; state replicated
"""

from mexjax.train._loop import (
    RECIPES,
    MetricsFileError,
    TrainConfig,
    TrainState,
    default_loss,
    fit,
    learning_rate_at,
    loss_weights,
    make_optimizer,
    make_train_step,
    predict,
    read_metrics,
    set_learning_rate,
)
from mexjax.train._losses import (
    cross_entropy,
    kl_divergence,
    sdn_loss,
    sdn_max_weights,
    sdn_weights,
    soft_cross_entropy,
)
from mexjax.train._sharding import batch_sharding, data_mesh, replicated

__all__ = [
    "RECIPES",
    "MetricsFileError",
    "TrainConfig",
    "TrainState",
    "batch_sharding",
    "cross_entropy",
    "data_mesh",
    "default_loss",
    "fit",
    "kl_divergence",
    "learning_rate_at",
    "loss_weights",
    "make_optimizer",
    "make_train_step",
    "predict",
    "read_metrics",
    "replicated",
    "sdn_loss",
    "sdn_max_weights",
    "sdn_weights",
    "set_learning_rate",
    "soft_cross_entropy",
]
