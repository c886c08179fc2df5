"""Real training: the NAS-Bench-201 network (:mod:`.network`) and the training recipe (:mod:`.recipe`)."""

from __future__ import annotations

from grabnas.train.network import TinyNetwork, count_flops, count_parameters
from grabnas.train.recipe import TrainConfig, TrainResult, train_and_evaluate

__all__ = ["TinyNetwork", "TrainConfig", "TrainResult", "count_flops", "count_parameters", "train_and_evaluate"]
