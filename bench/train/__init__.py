"""Training the learned Y-channel networks: TrainConfig -> run folder (checkpoints, curve) -> weights + model card.

The modules: `config` (TrainConfig, each network's TrainingDefaults, the checked Plan), `data` (patches),
`loop` (the steps), `checkpoint` (the run folder's files, resume), `validation` (scoring through the
evaluation core), `card` (the model card), `install` (weights + manifest + card) and `cli` (`bench train`).
"""

from bench.train.card import CardFacts
from bench.train.checkpoint import load_tensors, save_tensors
from bench.train.cli import add_train_arguments, config_from_args, run_train
from bench.train.config import Plan, TrainConfig, TrainingDefaults, make_plan, trainable_methods
from bench.train.install import install, install_dir
from bench.train.loop import TrainResult, lr_at, train, valid_loss
from bench.train.validation import evaluate

__all__ = [
    "TrainConfig",
    "TrainingDefaults",
    "TrainResult",
    "Plan",
    "CardFacts",
    "make_plan",
    "trainable_methods",
    "train",
    "evaluate",
    "install",
    "install_dir",
    "add_train_arguments",
    "config_from_args",
    "run_train",
    "valid_loss",
    "lr_at",
    "save_tensors",
    "load_tensors",
]
