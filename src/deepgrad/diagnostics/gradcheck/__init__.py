"""Gradient checking: central differences compared with backprop (see ``report``)."""

from deepgrad.diagnostics.gradcheck.report import (
    BANDS,
    DEFAULTS,
    DTYPES,
    EPS_RANGE,
    FAIL_UNITS,
    METHODS,
    MODES,
    NOISE_BAR,
    Entry,
    GradcheckReport,
    bands,
    gradcheck,
    gradcheck_network,
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
