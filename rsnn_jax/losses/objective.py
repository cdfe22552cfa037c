"""Objectives: weighted sums of loss terms, as pytrees (docs/losses_and_metrics.md).

An ``Objective``'s leaves are its weights μ_n (float32 scalars) and its static aux data are
its terms, so changing a weight (``with_weights``) does not retrace a jitted step;
``objective(outputs, recorded)`` returns Σ_n μ_n L_n and every term's unweighted L_n.
``compose`` builds one from {name: (weight, term)}; ``presets.make_objective`` builds the
paper's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from rsnn_jax.losses.terms import Term
from rsnn_jax.model import Passes, PassOutputs


def _weight(name: str, value) -> jax.Array:
    value = jnp.asarray(value, dtype=jnp.float32)
    if value.shape != ():
        raise ValueError(f"weight {name!r} must be a scalar, got shape {value.shape}")
    return value


@jax.tree_util.register_pytree_node_class
class Objective:
    """A weighted sum of loss terms (docs/losses_and_metrics.md); a pytree.

    The weights are float32 scalar leaves, so changing them (``with_weights``) keeps the same
    tree structure and a jitted step does not retrace; the terms are static aux data.

    Attributes:
      weights: {term name: float32 scalar}.
      terms: {term name: Term}, in composition order.
      free_from_zeros: the free pass starts from a silent history, as the official code
        does, instead of the batch's recorded history (``Passes.free_from_zeros``).
    """

    def __init__(
        self,
        terms: Mapping[str, Term],
        weights: Mapping[str, Any],
        free_from_zeros: bool = False,
    ):
        if set(terms) != set(weights):
            raise ValueError(
                f"Objective: terms {sorted(terms)} and weights {sorted(weights)} differ"
            )
        for name, term in terms.items():
            if not isinstance(term, Term):
                raise TypeError(f"Objective: term {name!r} is not a Term: {term!r}")
        self.terms = dict(terms)
        self.weights = {name: _weight(name, weights[name]) for name in terms}
        self.free_from_zeros = bool(free_from_zeros)

    def tree_flatten(self):
        return (self.weights,), (tuple(self.terms.items()), self.free_from_zeros)

    @classmethod
    def tree_unflatten(cls, aux, children):
        objective = object.__new__(cls)
        terms, objective.free_from_zeros = aux
        objective.terms = dict(terms)
        (objective.weights,) = children
        return objective

    def __repr__(self) -> str:
        parts = []
        for name, term in self.terms.items():
            weight = self.weights[name]
            try:
                weight = f"{float(weight):g}"
            except (TypeError, jax.errors.ConcretizationTypeError):
                pass
            parts.append(f"{name}={weight}·{term!r}")
        if self.free_from_zeros:
            parts.append("free_from_zeros=True")
        return "Objective(" + ", ".join(parts) + ")"

    @property
    def passes(self) -> Passes:
        """The merged simulation passes all terms need (``Passes.merge``), with
        ``free_from_zeros`` set when the objective asks for it."""
        start = Passes(free_from_zeros=self.free_from_zeros)
        return functools.reduce(Passes.merge, (t.passes for t in self.terms.values()), start)

    def __call__(
        self, outputs: PassOutputs, recorded: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Evaluates every term once and their weighted sum.

        Args:
          outputs: ``model.run_passes(..., passes=self.passes)``.
          recorded: float32 [K, T, N_V] recorded spikes of the batch.

        Returns:
          (Σ_n μ_n L_n as a float32 scalar, {term name: unweighted value L_n}).
        """
        values = {name: term(outputs, recorded) for name, term in self.terms.items()}
        total = sum(self.weights[name] * values[name] for name in self.terms)
        return jnp.asarray(total, jnp.float32), values

    def with_weights(self, **weights) -> Objective:
        """The same terms with some weights replaced (a jitted step does not retrace).

        Raises:
          ValueError: for a name that is not a term of this objective.
        """
        unknown = sorted(set(weights) - set(self.terms))
        if unknown:
            raise ValueError(f"with_weights: no term named {unknown}; terms are {list(self.terms)}")
        return Objective(self.terms, {**self.weights, **weights}, self.free_from_zeros)


def compose(terms: Mapping[str, tuple[float, Term]], *, free_from_zeros: bool = False) -> Objective:
    """Builds an objective from {name: (weight, term)}.

    Example::

        objective = compose({
            "mle": (0.4, MLETerm()),
            "counts": (1.0, sample_and_measure(statistics.population_count_distribution)),
        })

    ``free_from_zeros``: start the free pass from a silent history (``Objective``).
    """
    return Objective(
        {name: term for name, (_, term) in terms.items()},
        {name: weight for name, (weight, _) in terms.items()},
        free_from_zeros,
    )
