"""Training multi-exit networks: losses, the data-parallel train loop, evaluation.

TrainConfig, fit(net, train_set, config, *, workdir=None, eval_set=None) -> (variables, history)
predict(net, variables, images) -> f32[K, N, C]
read_metrics(path) -> [record]                 a run's metrics.jsonl (a cut last line is skipped)
make_optimizer, learning_rate_at, set_learning_rate   the recipes' optimizers, the learning rate per epoch
cross_entropy, soft_cross_entropy, kl_divergence, sdn_loss, sdn_weights   per-example losses ([B])
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
