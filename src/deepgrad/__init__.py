"""deepgrad: deep fully-connected networks with hand-written forward and backward passes.

>>> import deepgrad as dg
>>> net = dg.Network([64, 128, 64, 10], hidden_activation="relu", output="softmax",
...                  init="he_normal", seed=0)
>>> sorted(net.params)[:2]
['W1', 'W2']
"""

from . import initializers, optimizers
from .flat import flatten
from .gradcheck import GradcheckReport, gradcheck, gradcheck_network
from .io import load, save
from .model import Network
from .preprocessing import Preprocessing, Standardizer, UnscaledFeaturesWarning
from .training import DivergenceError, History, fit

__version__ = "0.1.0"

__all__ = [
    "Network",
    "fit",
    "History",
    "DivergenceError",
    "flatten",
    "save",
    "load",
    "initializers",
    "optimizers",
    "__version__",
    "gradcheck",
    "gradcheck_network",
    "GradcheckReport",
    "Standardizer",
    "Preprocessing",
    "UnscaledFeaturesWarning",
]

# Per-layer probe of vanishing/exploding signals and the data-driven LSUV initializer.
from .diagnostics import ProbeRecorder, probe, probe_training  # noqa: E402
from .lsuv import lsuv  # noqa: E402

__all__ += ["probe", "probe_training", "ProbeRecorder", "lsuv"]
