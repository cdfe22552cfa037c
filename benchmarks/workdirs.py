"""Reading experiment workdirs back: the run's configuration and its checkpoints."""

from __future__ import annotations

import json
import os

import flax.serialization
import jax

from rsnn_jax import experiment
from rsnn_jax import model as model_lib


def load_config(workdir: str) -> experiment.ExperimentConfig:
    """The ``ExperimentConfig`` of a run's ``config.json`` (nested, or flat from before)."""
    with open(os.path.join(workdir, "config.json")) as f:
        return experiment.ExperimentConfig.from_dict(json.load(f))


def load_params(path: str, model: model_lib.Model, batch) -> model_lib.ModelParams:
    """The parameters of checkpoint ``path`` of ``model`` (``batch``: any batch of its data)."""
    template = model_lib.init_model(jax.random.key(0), model, batch.stimulus.shape[-3:])
    with open(path, "rb") as f:
        raw = flax.serialization.msgpack_restore(f.read())
    return flax.serialization.from_state_dict(template, raw["params"])
