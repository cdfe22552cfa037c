"""Loss functions, loss terms, objectives and the paper's presets (docs/losses_and_metrics.md).

One concept per module, every public name re-exported here (``losses.mle_loss``,
``losses.PSTHTerm``, ``losses.make_objective``, …):

* ``numerics``: cross-entropies against model probabilities in log space (from the logits).
* ``dissimilarities``: MSE and CE between pytrees of statistics (user statistics).
* ``functions``: the loss functions, pure functions of the recorded spikes and one pass's
  outputs (main text eqs. 3–5, appendix D eqs. 12–20); all means, not sums.
* ``terms``: which pass a loss reads (``Term``, ``MLETerm``, the generic ``VisibleTerm``
  with a builder per built-in loss, ``SMHTerm``, ``sample_and_measure``).
* ``objective``: ``Objective``, a pytree of weighted terms, and ``compose``.
* ``presets``: the paper's objectives as a table (``PRESETS``, ``make_objective``).
"""

from rsnn_jax.losses.dissimilarities import cross_entropy, dissimilarity, mean_squared_error
from rsnn_jax.losses.functions import (
    elbo_sm_loss,
    mle_loss,
    nc_loss,
    nc_mse_loss,
    nc_shuffled_loss,
    psth_loss,
    sample_and_measure_loss,
    single_trial_loss,
    sm_h_loss,
    sm_h_official_loss,
)
from rsnn_jax.losses.numerics import binary_cross_entropy
from rsnn_jax.losses.objective import Objective, compose
from rsnn_jax.losses.presets import PRESETS, TERM_NAMES, make_objective, preset_terms
from rsnn_jax.losses.terms import (
    ELBOSMTerm,
    MLETerm,
    NCMSETerm,
    NCShuffledTerm,
    NCTerm,
    PSTHTerm,
    SampleAndMeasureTerm,
    SingleTrialTerm,
    SMHTerm,
    Term,
    VisibleTerm,
    draw_partners,
    sample_and_measure,
)

__all__ = [
    "PRESETS",
    "TERM_NAMES",
    "ELBOSMTerm",
    "MLETerm",
    "NCMSETerm",
    "NCShuffledTerm",
    "NCTerm",
    "Objective",
    "PSTHTerm",
    "SMHTerm",
    "SampleAndMeasureTerm",
    "SingleTrialTerm",
    "Term",
    "VisibleTerm",
    "binary_cross_entropy",
    "compose",
    "cross_entropy",
    "dissimilarity",
    "draw_partners",
    "elbo_sm_loss",
    "make_objective",
    "mean_squared_error",
    "mle_loss",
    "nc_loss",
    "nc_mse_loss",
    "nc_shuffled_loss",
    "preset_terms",
    "psth_loss",
    "sample_and_measure",
    "sample_and_measure_loss",
    "single_trial_loss",
    "sm_h_loss",
    "sm_h_official_loss",
]
