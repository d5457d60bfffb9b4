"""``Network``: a thin façade over the reference math (``core.network``) and the training
loop (``Network.fit`` is ``train.api``'s, with ``deepgrad.fit``'s keywords)."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from deepgrad.core import activations, dropout, initializers, losses
from deepgrad.core import network as nw
from deepgrad.core.backend import namespace, scalar, to_numpy
from deepgrad.core.checks import (
    as_2d_float,
    check_fits_dtype,
    check_float,
    check_int,
    check_targets,
    encode_targets,
)
from deepgrad.data.preprocessing import Preprocessing
from deepgrad.devices import torch_backend as tb
from deepgrad.train.api import network_fit
from deepgrad.train.types import TrainingState

__all__ = ["Network", "DTYPES", "resolve_l2_normalization"]

DTYPES = ("float32", "float64")
_L2_ALLOWED = '"batch" (m_reg = the rows of X) or a positive int (an explicit m_reg)'


def resolve_l2_normalization(l2_normalization="batch", l2_denominator=None) -> int | None:
    """m_reg of the L2 term lambda/(2 m_reg) sum ||W||_F^2 for a cost on the rows given:
    None for ``l2_normalization="batch"`` (m_reg = the rows of X), else the positive int
    given (e.g. the training-set size).

    ``l2_denominator`` is the int form's deprecated name: it gives a DeprecationWarning,
    and giving it with an int ``l2_normalization`` is a TypeError.
    """
    if l2_denominator is not None:
        return _deprecated_denominator(l2_normalization, l2_denominator)
    if isinstance(l2_normalization, str):
        if l2_normalization == "batch":
            return None
        hint = ""
        if l2_normalization == "dataset":  # fit's option: there the training set is known
            hint = "; 'dataset' is fit's (m_reg = the training set): pass its size as an int"
        raise ValueError(f"l2_normalization must be {_L2_ALLOWED}, got {l2_normalization!r}{hint}")
    if isinstance(l2_normalization, bool) or not isinstance(l2_normalization, numbers.Integral):
        raise TypeError(f"l2_normalization must be {_L2_ALLOWED}, got {l2_normalization!r}")
    if l2_normalization < 1:
        raise ValueError(f"l2_normalization must be {_L2_ALLOWED}, got {l2_normalization!r}")
    return int(l2_normalization)


def _deprecated_denominator(l2_normalization, l2_denominator) -> int:
    if not (isinstance(l2_normalization, str) and l2_normalization == "batch"):
        raise TypeError(
            f"got l2_normalization={l2_normalization!r} and its deprecated name "
            f"l2_denominator={l2_denominator!r}; pass only l2_normalization"
        )
    m_reg = check_int("l2_denominator", l2_denominator, 1)
    warnings.warn(
        f"l2_denominator is deprecated; pass l2_normalization={m_reg} instead "
        f"(l2_normalization=<int>, the same m_reg)",
        DeprecationWarning,
        stacklevel=4,  # the caller of Network.cost or gradcheck_network
    )
    return m_reg


def _check_layer_sizes(layer_sizes) -> tuple[int, ...]:
    if isinstance(layer_sizes, str | bytes) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(
            f"layer_sizes must be a list of ints like [64, 128, 10], got {layer_sizes!r}"
        )
    if len(layer_sizes) < 2:
        raise ValueError(
            f"layer_sizes needs at least 2 entries (inputs and outputs), got {list(layer_sizes)!r}"
        )
    return tuple(check_int(f"layer_sizes[{i}]", n, 1) for i, n in enumerate(layer_sizes))


class Network:
    """A deep fully-connected network with hand-written forward and backward passes.

    Parameters
    ----------
    layer_sizes : [n^[0], n^[1], ..., n^[L]]: inputs, hidden layer widths, outputs.
    hidden_activation : "relu", "leaky_relu", "tanh", "sigmoid" or "linear".
    output : "sigmoid" (binary cross-entropy), "softmax" (categorical cross-entropy) or
        "linear" (half mean squared error).
    init : an initializer name (``deepgrad.initializers.names()``) or a callable
        ``(shape, rng, dtype) -> array``. "auto": He for ReLU, Xavier for tanh/sigmoid.
    seed : seeds the initializer (``rng`` may be passed instead: a ``Generator``, or a
        legacy ``RandomState``, e.g. ``RandomState(3)`` draws what the course's
        ``np.random.seed(3)`` followed by ``np.random.randn`` draws).
    dtype : "float32" (default) or "float64".
    backend : "numpy" (default) or "torch": parameters as torch tensors, trained by the
        same hand-written forward/backward/update code (no autograd). Needs PyTorch.
    device : for backend="torch": "cpu", "cuda", "cuda:<index>" (None: "cuda" when a GPU
        is visible, else "cpu"). The initial parameters are drawn in NumPy and then moved,
        so a seed gives the same network on every backend. See also ``to``.

    Attributes
    ----------
    params : {"W1": (n^[1], n^[0]), "b1": (n^[1],), ..., "WL", "bL"}
    training : a ``TrainingState`` (optimizer name, its state, epochs done) set by each
        ``fit``; the next fit with the same optimizer continues from it (two fits equal
        one fit with the epochs added, bit for bit). ``net.training = None`` starts the
        optimizer afresh. None for a new or loaded network.

    Example
    -------
    >>> import deepgrad as dg, numpy as np
    >>> net = dg.Network([4, 8, 3], output="softmax", seed=0)
    >>> net.params["W1"].shape, net.params["b1"].shape
    ((8, 4), (8,))
    >>> net.predict(np.zeros((2, 4))).shape
    (2,)
    """

    def __init__(
        self,
        layer_sizes,
        hidden_activation: str = "relu",
        output: str = "sigmoid",
        init="auto",
        seed: int | None = None,
        dtype: str = "float32",
        rng: np.random.Generator | np.random.RandomState | None = None,
        backend: str = "numpy",
        device=None,
    ):
        backend, device = tb.resolve(backend, device)
        sizes = _check_layer_sizes(layer_sizes)
        activations.get(hidden_activation)
        losses.get(output)
        if output == "softmax" and sizes[-1] < 2:
            raise ValueError(
                f"a softmax output needs >= 2 units, got layer_sizes[-1] = {sizes[-1]}"
            )
        if not callable(init):
            initializers.get(init, activation=hidden_activation)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if rng is None:
            if seed is not None:
                check_int("seed", seed, 0)
            rng = np.random.default_rng(seed)
        elif not isinstance(rng, np.random.Generator | np.random.RandomState):
            raise TypeError(
                f"rng must be a numpy.random.Generator or RandomState, got {type(rng).__name__}"
            )
        self.spec = nw.Spec(sizes, hidden_activation, output)
        self.dtype = dtype
        self.init = init
        self.params = nw.init_params(self.spec, init, rng, dtype)
        self.preprocessing: Preprocessing | None = None
        self.training: TrainingState | None = None  # set by fit: continued training
        if backend != "numpy":
            self.params = tb.move_params(self.params, backend, device, dtype)

    # -- description -------------------------------------------------------------------
    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return self.spec.layer_sizes

    @property
    def backend(self) -> str:
        """ "numpy" or "torch": what the parameters are."""
        return tb.backend_of(self.params["W1"])

    @property
    def device(self):
        """The parameters' torch.device for the torch backend, "cpu" for NumPy."""
        return tb.device_of(self.params["W1"]) or "cpu"

    def to(self, backend: str, device=None) -> Network:
        """Move the parameters to ``backend`` ("numpy" or "torch") and ``device`` (in place;
        returns self). ``net.to("torch", "cuda")``; ``net.to("numpy")`` brings them back."""
        backend, device = tb.resolve(backend, device)
        self.params = tb.move_params(self.params, backend, device, self.dtype)
        return self

    @property
    def n_params(self) -> int:
        """P, the length of the concatenated parameter vector theta."""
        return sum(int(np.prod(s)) for s in self.spec.shapes().values())

    def __repr__(self) -> str:
        init = self.init if isinstance(self.init, str) else "custom"
        return (
            f"Network({list(self.layer_sizes)}, hidden_activation={self.spec.hidden_activation!r}, "
            f"output={self.spec.output!r}, init={init!r}, dtype={self.dtype!r}, "
            f"params={self.n_params}"
            + ("" if self.backend == "numpy" else f", backend='torch', device='{self.device}'")
            + ")"
        )

    def copy(self) -> Network:
        """A network with the same architecture and a copy of the parameters."""
        new = object.__new__(Network)
        new.spec, new.dtype, new.init = self.spec, self.dtype, self.init
        new.preprocessing = self.preprocessing  # immutable: shared
        new.training = getattr(self, "training", None)  # immutable: shared
        xp = namespace(*self.params.values())
        new.params = {k: xp.asarray(v, copy=True) for k, v in self.params.items()}
        return new

    # -- inputs ------------------------------------------------------------------------
    def validate_inputs(self, X):
        """X (m, n^[0]) checked (2-D, not empty, finite, n^[0] columns, fits the dtype) and
        converted once: in the network's dtype, namespace and device. What every method
        taking X runs first; code built on ``core.network`` can call it and then trust X.

        >>> import deepgrad as dg, numpy as np
        >>> dg.Network([2, 1], seed=0).validate_inputs([[1, 2]]).dtype
        dtype('float32')
        """
        tb.check_inputs(self.params, X=X)
        return self._as_input(X)

    def _as_input(self, X):
        X = as_2d_float("X", X, self.layer_sizes[0], dtype=self.dtype)
        W = self.params["W1"]
        if self.backend == "torch":  # host arrays are copied to the parameters' device
            return tb.as_device_array(X, W)
        if isinstance(X, np.ndarray):
            X = np.asarray(X, dtype=self.dtype)
            return X if isinstance(W, np.ndarray) else namespace(W).asarray(X)
        xp = namespace(W)
        return xp.astype(X, getattr(xp, self.dtype))

    def validate_data(self, X, Y):
        """(X, Y) checked and converted once: X as ``validate_inputs`` gives it, Y (m,)
        labels or (m, n^[L]) targets checked against the output layer and encoded as a
        float (m, n^[L]) array beside X (one-hot for class labels)."""
        tb.check_inputs(self.params, X=X, Y=Y)
        Xa = self._as_input(X)
        Y = check_targets("Y", Y, self.spec.output, self.layer_sizes[-1], Xa.shape[0])
        check_fits_dtype("Y", Y, self.dtype)
        return Xa, encode_targets(
            Y, self.spec.output, self.layer_sizes[-1], namespace(Xa), Xa.dtype,
            device=tb.device_of(Xa),
        )  # fmt: skip

    # -- the math ------------------------------------------------------------------------
    def _masks(self, masks, m: int):
        """None, or one (m, n^[l]) mask per hidden layer (as ``draw_masks`` gives)."""
        if masks is None:
            return None
        hidden = self.spec.hidden_sizes
        if not isinstance(masks, list | tuple) or len(masks) != len(hidden):
            raise TypeError(
                f"masks must be a list of {len(hidden)} arrays (one per hidden layer, from "
                f"draw_masks), got {type(masks).__name__}"
                + (f" of length {len(masks)}" if isinstance(masks, list | tuple) else "")
            )
        for l, (mask, n) in enumerate(zip(masks, hidden, strict=True), start=1):
            if tuple(getattr(mask, "shape", ())) != (m, n):
                raise ValueError(
                    f"masks[{l - 1}] must have shape ({m}, {n}) (the batch's rows x hidden layer "
                    f"{l}'s units), got {getattr(mask, 'shape', type(mask).__name__)}"
                )
        return masks

    def forward(self, X, masks=None):
        """(Z^[L], cache) for X (m, n^[0]); see ``network.forward``."""
        Xa = self.validate_inputs(X)
        return nw.forward(self.params, Xa, self.spec, self._masks(masks, Xa.shape[0]))

    def cost(
        self,
        X,
        Y,
        l2: float = 0.0,
        masks=None,
        l2_normalization: str | int = "batch",
        *,
        l2_denominator: int | None = None,
    ) -> float:
        """The seed's J = (1/m) sum L + lambda/(2 m_reg) sum ||W||_F^2 on (X, Y), a float.

        ``masks``: frozen dropout masks (``draw_masks``). ``l2_normalization``: "batch"
        (default, m_reg = m, the rows of X) or a positive int m_reg (e.g. the training-set
        size: the cost ``fit(l2_normalization="dataset")`` minimizes). ``l2_denominator``
        is the int form's deprecated name.

        >>> import deepgrad as dg, numpy as np
        >>> net = dg.Network([2, 3, 1], seed=0, dtype="float64")
        >>> X, y = np.ones((4, 2)), np.array([0, 1, 1, 0])
        >>> net.cost(X, y, l2=1.0, l2_normalization=4) == net.cost(X, y, l2=1.0)
        True
        """
        l2 = check_float("l2", l2, 0.0)
        m_reg = resolve_l2_normalization(l2_normalization, l2_denominator)
        Xa, Ya = self.validate_data(X, Y)
        masks = self._masks(masks, Xa.shape[0])
        return scalar(nw.cost(self.params, Xa, Ya, self.spec, l2, m_reg, masks))

    def cost_and_gradients(
        self,
        X,
        Y,
        l2: float = 0.0,
        masks=None,
        l2_normalization: str | int = "batch",
        *,
        l2_denominator: int | None = None,
    ):
        """(J, grads) with the arguments of ``cost``: grads has the keys and shapes of
        ``params``."""
        l2 = check_float("l2", l2, 0.0)
        m_reg = resolve_l2_normalization(l2_normalization, l2_denominator)
        Xa, Ya = self.validate_data(X, Y)
        masks = self._masks(masks, Xa.shape[0])
        J, grads = nw.cost_and_gradients(self.params, Xa, Ya, self.spec, l2, m_reg, masks)
        return scalar(J), grads

    def draw_masks(self, m: int, keep_prob: float, rng: np.random.Generator) -> list:
        """Inverted-dropout masks for a batch of m examples (one per hidden layer)."""
        keep_prob = check_float("keep_prob", keep_prob, 0.0, 1.0, low_open=True)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        xp = namespace(self.params["W1"])
        xp = None if xp is namespace(np.empty(0)) else xp
        device = tb.device_of(self.params["W1"])
        return dropout.draw_masks(
            rng,
            check_int("m", m, 1),
            self.spec.hidden_sizes,
            keep_prob,
            xp,
            self.dtype,
            device=device,
        )

    # deepgrad.fit's keywords, defaults and docstring (train.api): one definition for both;
    # net.fit(X, Y, ...) always goes through the preprocessing record.
    fit = network_fit

    def _model_X(self, X):
        """The user's rows as the network's inputs: standardized if the record says so."""
        pre = self.preprocessing
        if pre is None:
            return X
        # a pandas DataFrame: the training columns picked by name (any order, extra
        # columns ignored), text and missing cells encoded as in training
        X = pre.encode_columns(X)
        if pre.inputs is not None:
            X = self.validate_inputs(X)  # shape and value checks before any arithmetic
        return X if pre.inputs is None else pre.inputs.transform(X)

    def predict_proba(self, X):
        """A^[L], shape (m, n^[L]): probabilities for sigmoid/softmax, values for linear
        (in the user's units when the targets were scaled).

        softmax: column i is class ``preprocessing.classes[i]`` (or label i). One sigmoid
        unit: the single column is the probability of the second class,
        ``preprocessing.classes[1]`` (or label 1); the first class's is 1 minus it.
        """
        ZL, _ = self.forward(self._model_X(X))
        A = losses.get(self.spec.output).activation(ZL)
        pre = self.preprocessing
        if pre is not None and pre.targets is not None:
            return pre.decode(A)
        return A

    def predict(self, X):
        """Class labels (m,) for softmax/single sigmoid, 0/1 (m, k) for k sigmoids,
        values (m,) or (m, n^[L]) for linear; in the user's labels and units when the
        network has a preprocessing record (see ``fit``)."""
        ZL, _ = self.forward(self._model_X(X))
        xp = namespace(ZL)
        if self.spec.output == "softmax":
            labels = xp.argmax(ZL, axis=1)
        else:
            labels = xp.astype(ZL > 0, xp.int64) if self.spec.output == "sigmoid" else ZL
            labels = labels[:, 0] if labels.shape[1] == 1 else labels
        return labels if self.preprocessing is None else self.preprocessing.decode(labels)

    def to_numpy(self) -> Network:
        """This network with its parameters as NumPy arrays (in place; returns self)."""
        self.params = {k: np.asarray(to_numpy(v), dtype=self.dtype) for k, v in self.params.items()}
        return self
