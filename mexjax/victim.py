"""The old name of `mexjax.victim_training` (the victim training pipeline), kept so that scripts written
against it still run. Import `mexjax.victim_training` instead: `victim` is what every attack calls the
model it attacks, and a module of that name shadowed the variable."""

import warnings

from mexjax.data import fit_dataset as prepare
from mexjax.data import fit_to_input
from mexjax.results import machine_description
from mexjax.victim_training import (
    NO_FLIP,
    VictimConfig,
    evaluate,
    input_shape_for,
    load_or_train,
    plot_exit_histogram,
    train_victim,
)

__all__ = [
    "NO_FLIP",
    "VictimConfig",
    "evaluate",
    "fit_to_input",
    "input_shape_for",
    "load_or_train",
    "machine_description",
    "plot_exit_histogram",
    "prepare",
    "train_victim",
]

warnings.warn(
    "mexjax.victim is now mexjax.victim_training (fit_to_input / prepare: mexjax.data.fit_to_input / "
    "fit_dataset; machine_description: mexjax.results)",
    DeprecationWarning,
    stacklevel=2,
)
