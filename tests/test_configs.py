"""ExperimentConfig: nested sub-configs, flat (flag) names, one validation per field."""

import dataclasses
import json

import pytest

from rsnn_jax import train
from rsnn_jax.configs import FLAT_NAMES, ExperimentConfig


def test_flat_names_reach_every_field_of_every_sub_config():
    config = ExperimentConfig("v1", "unused")
    reached = {(section, field) for section, field in FLAT_NAMES.values()}
    for section in ("data", "model", "batches", "objective", "start", "train", "evaluation"):
        for field in dataclasses.fields(getattr(config, section)):
            assert (section, field.name) in reached, (section, field.name)
    # Options the command line could not reach before the nesting.
    built = ExperimentConfig.build("v1", "unused", remat=True, clip_norm=0.5, data_seed=4)
    assert built.train == train.TrainConfig(remat=True, clip_norm=0.5)
    assert built.data.seed == 4 and built.train.seed == 0


def test_json_round_trip_nested_and_from_the_flat_layout():
    config = ExperimentConfig.build(
        "retina",
        "runs/r",
        loss="mle_single_trial_nc",
        weights=(("nc", 2.0),),
        conv_features=(8, 16),
        clamp_until=75,
        learning_rate_scales=(("encoder", 0.5),),
        weight_decay_scales=(("network/recurrent_weights", 0.0),),
        average_steps=100,
        eval_trials=7,
    )
    nested = json.loads(json.dumps(dataclasses.asdict(config)))
    assert nested["objective"]["weights"] == [["nc", 2.0]]
    assert ExperimentConfig.from_dict(nested) == config
    # config.json as runs wrote it before the nesting: flat, with names since removed.
    flat = json.loads(json.dumps(config.flat()))
    flat["a_setting_since_removed"] = 1
    assert ExperimentConfig.from_dict(flat) == config
    assert config.replace(num_steps=5).train.num_steps == 5 and config.train.num_steps == 1000


@pytest.mark.parametrize(
    "flat, message",
    [
        ({"num_steps": 0}, "--steps=0: must be >= 1"),
        ({"batch_size": 0}, "--batch_size=0: must be >= 1"),
        ({"num_hidden": -1}, "--hidden=-1: must be >= 0"),
        ({"data_trials": 0}, "--data_trials=0: must be >= 1"),
        ({"eval_trials": 0}, "--eval_trials=0: must be >= 1"),
        ({"learning_rate": 0.0}, "--learning_rate=0.0: must be > 0"),
        ({"final_lr_fraction": 2.0}, "--final_lr_fraction=2.0: must be in [0, 1]"),
        ({"loss": "nope"}, "--loss=nope: unknown preset"),
        ({"clip_bins": 10, "clamp_until": 10}, "--clamp_until=10: T_gt must be in (0,"),
        ({"num_devices": -1}, "--devices=-1: must be >= 0"),
    ],
)
def test_each_bad_setting_names_its_flag(flat, message):
    with pytest.raises(ValueError) as error:
        ExperimentConfig.build("retina", "unused", **flat)
    assert str(error.value).startswith(message)


def test_an_unknown_setting_is_refused():
    with pytest.raises(TypeError, match="no setting 'num_step'"):
        ExperimentConfig.build("v1", "unused", num_step=3)
