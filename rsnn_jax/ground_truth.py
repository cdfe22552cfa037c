"""The ground-truth model of a synthetic recording, and its ``/target`` group in the file.

A synthetic data set (``rsnn_jax.synthetic``) is sampled from a known ``model.Model``; the
recording file keeps it, next to the data, in an optional ``/target`` group (docs/data.md)::

    /target                    attrs: encoder (class name), encoder_config (JSON of the
                               module's fields), num_visible, num_hidden, num_delays,
                               threshold, temperature, dampening, recurrent_weights_layout
    /target/encoder/<path>     float32   Flax variables, e.g. params/SpatialCNN_0/Conv_0/kernel
    /target/network/input_weights      float32 [F, N]
    /target/network/recurrent_weights  float32 [D, N, N]   ([d − 1, pre, post])
    /target/network/bias               float32 [N]

``rsnn_jax.data.save_recording`` writes the group by calling ``Target.write`` (the data
layer holds no model code); ``rsnn_jax.data.validate_recording`` checks its attributes and
array shapes; ``load_target`` rebuilds the model and its parameters.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import h5py
import jax
import numpy as np

from rsnn_jax import encoders, network
from rsnn_jax import model as model_lib
from rsnn_jax.data.recording import DataError, Problem, validate_recording

# Encoders rebuilt from their stored class name; others are passed to load_target.
_ENCODERS = {"V1Encoder": encoders.V1Encoder, "RetinaEncoder": encoders.RetinaEncoder}


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested mapping as ``{"a/b/c": leaf}``."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict:
    """``{"a/b/c": leaf}`` as a nested dict of float32 arrays (the inverse of _flatten)."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = np.asarray(value, np.float32)
    return tree


def _encoder_config(encoder) -> dict:
    """The encoder module's own fields (tuples as lists: JSON)."""
    config = {}
    for field in dataclasses.fields(encoder):
        if field.name in ("parent", "name"):
            continue
        value = getattr(encoder, field.name)
        config[field.name] = list(value) if isinstance(value, tuple) else value
    return config


class Target(NamedTuple):
    """The ground-truth model of a synthetic data set (``Recording.target``).

    Attributes:
      model: ``rsnn_jax.model.Model`` (encoder module + network config; visible neurons are the
        recorded ones, in the order of the spikes' last axis).
      params: ``rsnn_jax.model.ModelParams`` (encoder variables, network params in the package
        layout ``recurrent_weights[d − 1, pre, post]``).
    """

    model: model_lib.Model
    params: model_lib.ModelParams

    def write(self, group: h5py.Group) -> None:
        """Fills the empty ``/target`` group of a recording file (layout: module docstring)."""
        config = self.model.network
        group.attrs["encoder"] = type(self.model.encoder).__name__
        group.attrs["encoder_config"] = json.dumps(
            _encoder_config(self.model.encoder), sort_keys=True
        )
        for name in ("num_visible", "num_hidden", "num_delays"):
            group.attrs[name] = int(getattr(config, name))
        for name in ("threshold", "temperature", "dampening"):
            group.attrs[name] = float(getattr(config, name))
        group.attrs["recurrent_weights_layout"] = "[delay - 1, pre, post]"
        for name, value in _flatten(self.params.encoder).items():
            group.create_dataset(f"encoder/{name}", data=np.asarray(value, np.float32))
        for name in ("input_weights", "recurrent_weights", "bias"):
            group.create_dataset(
                f"network/{name}", data=np.asarray(getattr(self.params.network, name), np.float32)
            )


def _stored_encoder(attrs, source: str):
    """The encoder module named by the ``/target`` attributes."""
    name = attrs["encoder"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    if name not in _ENCODERS:
        raise DataError(
            [Problem("/target", f"unknown encoder class {name!r}; pass encoder=")], source
        )
    config = json.loads(attrs["encoder_config"])
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return _ENCODERS[name](**config)


def _network_config(attrs) -> network.NetworkConfig:
    return network.NetworkConfig(
        num_visible=int(attrs["num_visible"]),
        num_hidden=int(attrs["num_hidden"]),
        num_delays=int(attrs["num_delays"]),
        threshold=float(attrs.get("threshold", 0.4)),
        temperature=float(attrs.get("temperature", 1.0)),
        dampening=float(attrs.get("dampening", 0.3)),
    )


def _variable_problems(
    encoder, flat: dict, network_params: network.NetworkParams, clip: tuple[int, ...]
) -> list[Problem]:
    """Stored encoder variables against the encoder's own tree on a ``clip`` [R + 1, H, W]."""
    features, variables = jax.eval_shape(
        lambda c: encoder.init_with_output(jax.random.key(0), c),
        jax.ShapeDtypeStruct(clip, np.float32),
    )
    expected = _flatten(variables)
    problems = [
        Problem(
            f"/target/encoder/{k}",
            f"expected shape {list(v.shape)}, got "
            f"{list(flat[k].shape) if k in flat else 'nothing'}",
        )
        for k, v in expected.items()
        if k not in flat or flat[k].shape != v.shape
    ]
    problems += [
        Problem(f"/target/encoder/{k}", "not a variable of the encoder")
        for k in flat
        if k not in expected
    ]
    if network_params.input_weights.shape[0] != features.shape[-1]:
        problems.append(
            Problem(
                "/target/network/input_weights",
                f"{network_params.input_weights.shape[0]} rows, but the encoder gives "
                f"{features.shape[-1]} features for {list(clip[1:])} frames",
            )
        )
    return problems


def load_target(path: str | os.PathLike, *, encoder=None) -> Target:
    """Rebuilds the ground-truth model of a synthetic recording file.

    Args:
      path: an HDF5 recording with a ``/target`` group.
      encoder: the encoder module, for encoders other than ``V1Encoder``/``RetinaEncoder``
        (rebuilt from the stored class name and configuration otherwise).

    Returns:
      Target(model: ``model.Model``, params: ``model.ModelParams``); unpack as
      ``target_model, target_params = load_target(path)``. The network's first
      ``num_visible`` neurons are the recorded ones; connectivity R² uses
      ``params.network.recurrent_weights[:, :num_visible, :num_visible]``.

    Raises:
      DataError: if the file or its target is malformed, or the stored encoder variables do
        not match the encoder's own variable tree.
    """
    source = os.fspath(path)
    problems = validate_recording(path)
    with h5py.File(path, "r") as f:
        if "target" not in f:
            problems.append(Problem("/target", "missing group: this recording has no target"))
        if problems:
            raise DataError(problems, source)
        group = f["target"]
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in group.attrs.items()}
        encoder = encoder if encoder is not None else _stored_encoder(attrs, source)
        flat = {}
        group["encoder"].visititems(
            lambda name, node: (
                flat.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None
            )
        )
        network_params = network.NetworkParams(
            **{
                k: np.asarray(group["network"][k][()], np.float32)
                for k in network.NetworkParams._fields
            }
        )
        frame_shape = next(iter(f["stimuli"].values())).shape[1:]
    target_model = model_lib.Model(encoder, _network_config(attrs))
    clip = (target_model.receptive_field + 1,) + tuple(frame_shape)
    problems = _variable_problems(encoder, flat, network_params, clip)
    if problems:
        raise DataError(problems, source)
    return Target(
        target_model, model_lib.ModelParams(encoder=_unflatten(flat), network=network_params)
    )
