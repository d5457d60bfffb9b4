"""deepgrad: deep fully-connected networks with hand-written forward and backward passes.

>>> import deepgrad as dg
>>> net = dg.Network([64, 128, 64, 10], hidden_activation="relu", output="softmax",
...                  init="he_normal", seed=0)
>>> sorted(net.params)[:2]
['W1', 'W2']
"""

from importlib import import_module

from deepgrad.core import initializers
from deepgrad.core.flat import flatten
from deepgrad.model.net import Network
from deepgrad.optim import optimizers

__version__ = "0.1.0"

# Loaded when first used, so that `import deepgrad` stays light: the training loop and its
# engines, the gradient checker, the probes and the files load with the first call.
_LAZY = {
    "fit": "deepgrad.train.api",
    "History": "deepgrad.train.types",
    "StepInfo": "deepgrad.train.types",
    "DivergenceError": "deepgrad.train.types",
    "DivergenceWarning": "deepgrad.train.types",
    "TrainingState": "deepgrad.train.types",
    "save": "deepgrad.model.file",
    "load": "deepgrad.model.file",
    "gradcheck": "deepgrad.diagnostics.gradcheck",
    "gradcheck_network": "deepgrad.diagnostics.gradcheck",
    "GradcheckReport": "deepgrad.diagnostics.gradcheck",
    "Standardizer": "deepgrad.data.preprocessing",
    "TableEncoder": "deepgrad.data.columns",
    "UnseenCategoryWarning": "deepgrad.data.columns",
    "Preprocessing": "deepgrad.data.preprocessing",
    "UnscaledFeaturesWarning": "deepgrad.data.preprocessing",
    "probe": "deepgrad.diagnostics.probe",
    "probe_training": "deepgrad.diagnostics.probe",
    "ProbeRecorder": "deepgrad.diagnostics.probe",
    "ProbeReport": "deepgrad.diagnostics.probe",
    "LayerStats": "deepgrad.diagnostics.probe",
    "TrainingProbe": "deepgrad.diagnostics.probe",
    "lsuv": "deepgrad.diagnostics.lsuv",
}

__all__ = ["Network", "flatten", "initializers", "optimizers", "__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'deepgrad' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
