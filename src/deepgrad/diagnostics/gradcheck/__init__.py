"""Gradient checking (the seed, section 2): central differences compared with backprop.

For every element theta_i of the concatenated parameters,

    d_theta_approx[i] = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)

and the check passes when the seed's normalised distance

    ||d_theta_approx - d_theta||_2 / (||d_theta_approx||_2 + ||d_theta||_2)

is below ``threshold``. The report also says *which* elements disagree: a bug in one
layer's backward shows up as that array's entries, worst first.

This package owns the gradient checker, one module per concern (imports point down):

- ``network``: ``gradcheck_network(net, X, Y)``, the front end for a deepgrad network:
  validates once, freezes dropout masks, picks a method;
- ``exact`` (default): the central differences without cancellation, by difference
  propagation (``diagnostics.diffprop``): ~1e-16 in float64 instead of the plain
  formula's ulp(J) / (2 eps) ~ 1e-9, each element judged against its own noise floor;
- ``plain``: the seed's formula, batched (the unperturbed forward pass reused up to the
  perturbed layer, many perturbed networks as one matrix product);
- ``common``: what the two network methods share (their records, batches on threads);
- ``generic``: ``gradcheck(cost_fn, params, grads)`` for any NumPy cost function of a
  dict of arrays (or of one array): the plain loop, 2 cost evaluations per element;
- ``report``: ``GradcheckReport``, ``Entry``, the verdict bands and bars.

float32 networks are checked in float32, with their own eps, bar and bands (``DEFAULTS``).

Imports: deepgrad.model, devices and core, and ``diagnostics.diffprop``.
"""

from deepgrad.diagnostics.gradcheck.generic import MODES, gradcheck
from deepgrad.diagnostics.gradcheck.network import DTYPES, EPS_RANGE, METHODS, gradcheck_network
from deepgrad.diagnostics.gradcheck.report import (
    BANDS,
    DEFAULTS,
    FAIL_UNITS,
    NOISE_BAR,
    Entry,
    GradcheckReport,
    bands,
    verdict,
)

__all__ = [
    "gradcheck",
    "gradcheck_network",
    "GradcheckReport",
    "Entry",
    "BANDS",
    "verdict",
    "bands",
    "MODES",
    "METHODS",
    "DTYPES",
    "DEFAULTS",
    "EPS_RANGE",
    "FAIL_UNITS",
    "NOISE_BAR",
]
