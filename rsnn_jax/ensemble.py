"""Ensembles: M models trained together in one compiled program (``jax.vmap``).

The M members differ in their initialisation and noise seeds and/or in their loss weights;
they share the model architecture, the objective's terms and the batches. Their train
states are stacked on a leading member axis [M, ...] and ``make_ensemble_step`` vmaps
``train.train_step_function`` over it, so one compiled step advances all M models (the
per-bin delay sum becomes one batched matmul [M, K, D·N] @ [M, D·N, N] instead of M small
ones, and the shared stimulus is loaded once). Member m follows the run that a single model
with the same initial parameters, weights and step keys follows, up to float rounding.

Objectives that differ only in their weights (array leaves, ``losses.Objective``) stack with
``stack``; changing the stacked weights does not recompile.

Example::

    keys = jax.random.split(jax.random.key(0), M)
    states = ensemble.init_ensemble(keys, model, stimulus_shape, optimizer)
    objectives = ensemble.stack([base.with_weights(nc=w) for w in nc_weights])
    step = ensemble.make_ensemble_step(model, optimizer)
    for i, batch in enumerate(batches):
        keys = ensemble.step_keys(seeds, i)
        states, terms, finite = step(states, objectives, batch, keys)
    best = ensemble.member(states, 0).params
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rsnn_jax import model as model_lib
from rsnn_jax import parallel, train


def stack(trees: Sequence[Any]) -> Any:
    """Stacks M pytrees of the same structure leaf by leaf: leaves [...] → [M, ...].

    Raises:
      ValueError: if the trees differ in structure (e.g. objectives with different terms).
    """
    trees = list(trees)
    if not trees:
        raise ValueError("ensemble.stack: no trees to stack")
    structure = jax.tree.structure(trees[0])
    for i, tree in enumerate(trees[1:], start=1):
        if jax.tree.structure(tree) != structure:
            raise ValueError(
                f"ensemble.stack: member {i} has another structure than member 0 (objectives "
                f"must have the same terms and differ only in weights):\n{tree}\nvs\n{trees[0]}"
            )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: Any, index: int) -> Any:
    """Member ``index`` of a stacked pytree: leaves [M, ...] → [...]."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def init_ensemble(
    keys: jax.Array,
    model: model_lib.Model,
    stimulus_shape: tuple[int, ...],
    optimizer: optax.GradientTransformation,
) -> train.TrainState:
    """Initialises M train states at once (``vmap`` of ``model.init_model`` over the keys).

    Args:
      keys: PRNG keys [M], one per member (member m's parameters are
        ``model.init_model(keys[m], ...)``).
      model: the shared architecture.
      stimulus_shape: one clip's shape (T + R − 1, H, W).
      optimizer: from ``train.make_optimizer``.

    Returns:
      TrainState whose leaves have a leading member axis [M, ...] (``step`` is int32 [M]).
    """

    def init(key):
        params = model_lib.init_model(key, model, stimulus_shape)
        return train.init_train_state(params, optimizer)

    return jax.vmap(init)(keys)


def step_keys(seeds: Sequence[int] | jax.Array, step) -> jax.Array:
    """Per-member step keys [M]: ``train.step_key(seeds[m], step)``, as ``train.fit`` uses."""
    return jax.vmap(train.step_key, in_axes=(0, None))(jnp.asarray(seeds), step)


def make_ensemble_step(
    model: model_lib.Model,
    optimizer: optax.GradientTransformation,
    remat: bool = False,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable:
    """The jitted ensemble step ``(states, objectives, batch, keys) -> (states, terms, finite)``.

    With a ``mesh`` (``parallel.make_mesh(axis="members")``; in a multi-process job it spans
    every process's devices) the members are split over its devices: place the states with
    ``parallel.shard_leading`` (M a multiple of the devices); each device, and so each
    process, advances only its members, in one compiled program. ``parallel.gather`` brings
    the states back to the host.

    Args of the returned function:
      states: a TrainState with leaves [M, ...] (``init_ensemble``); donated.
      objectives: M objectives stacked with ``stack`` (weights float32 [M]).
      batch: one ``data.batching.Batch`` shared by all members.
      keys: PRNG keys [M] (``step_keys``).

    Returns of the returned function:
      (states [M, ...], {term: float32 [M]} with ``total``, finite bool [M]). A member whose
      loss or gradient is not finite keeps its state; the others are updated.
    """
    step = jax.vmap(train.train_step_function(model, optimizer, remat), in_axes=(0, 0, None, 0))
    if mesh is None:
        return jax.jit(step, donate_argnums=(0,))
    return jax.jit(step, donate_argnums=(0,), out_shardings=parallel.trial_sharded(mesh))
