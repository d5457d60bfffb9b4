"""scikit-learn estimators on deepgrad networks: ``DeepClassifier`` and ``DeepRegressor``.

They follow scikit-learn's estimator API (``fit``, ``predict``, ``predict_proba``, ``score``,
``partial_fit``, ``get_params``/``set_params``, ``clone``) and pass its own estimator
checks (``sklearn.utils.estimator_checks``), so they work in ``Pipeline``, ``GridSearchCV``
and ``cross_val_score``. Training is deepgrad's: ``deepgrad.fit`` one epoch at a
time, with the optimizer state carried from epoch to epoch (and across ``partial_fit``
calls), the shuffle of epoch e a pure function of (random_state, e).

Example
-------
>>> from sklearn.datasets import load_digits
>>> from sklearn.model_selection import train_test_split
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import MinMaxScaler
>>> from deepgrad.sklearn import DeepClassifier
>>> X, y = load_digits(return_X_y=True)
>>> Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
>>> clf = make_pipeline(MinMaxScaler(), DeepClassifier(hidden_layer_sizes=(64, 32),
...                     batch_size=32, epochs=30, random_state=0)).fit(Xtr, ytr)
>>> clf.score(Xte, yte) > 0.95
True
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from deepgrad.core import activations, initializers
from deepgrad.core.checks import check_float, check_int
from deepgrad.data.preprocessing import warn_if_unscaled
from deepgrad.model.net import DTYPES, Network
from deepgrad.optim import optimizers
from deepgrad.train.api import fit as _train
from deepgrad.train.arguments import L2_NORMALIZATIONS
from deepgrad.train.stopping import EarlyStopping
from deepgrad.train.types import DivergenceWarning

__all__ = ["DeepClassifier", "DeepRegressor"]

SCALE_FIX = "put a scaler in front: make_pipeline(StandardScaler(), estimator)"


class _DeepBase(BaseEstimator):
    """What the classifier and the regressor share: hyperparameters and the epoch loop."""

    _output: str  # set by fit: "sigmoid", "softmax" or "linear"

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        init="auto",
        batch_size="auto",
        epochs=200,
        learning_rate=0.1,
        l2=1e-4,
        l2_normalization="batch",
        optimizer="gd",
        keep_prob=1.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        shuffle=True,
        random_state=None,
        verbose=False,
        dtype="float64",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.init = init
        self.batch_size = batch_size
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.l2 = l2
        self.l2_normalization = l2_normalization
        self.optimizer = optimizer
        self.keep_prob = keep_prob
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype

    # -- hyperparameters ----------------------------------------------------------------
    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        if isinstance(sizes, str | bytes) or not hasattr(sizes, "__iter__"):
            raise TypeError(
                f"hidden_layer_sizes must be a tuple of ints like (100,), got {sizes!r}"
            )
        return [check_int(f"hidden_layer_sizes[{i}]", n, 1) for i, n in enumerate(sizes)]

    def _validate_hyperparameters(self) -> None:
        """Called by fit: ValueError/TypeError naming the hyperparameter, value and range."""
        activations.get(self.activation)
        if not callable(self.init):
            initializers.get(self.init, activation=self.activation)
        if self.batch_size not in ("auto", None):
            check_int("batch_size", self.batch_size, 1)
        check_int("epochs", self.epochs, 1)
        check_float("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_float("l2", self.l2, 0.0)
        check_float("keep_prob", self.keep_prob, 0.0, 1.0, low_open=True)
        check_float("validation_fraction", self.validation_fraction, 0.0, 1.0, True, True)
        check_int("n_iter_no_change", self.n_iter_no_change, 1)
        check_float("tol", self.tol, 0.0)
        if self.l2_normalization not in L2_NORMALIZATIONS:
            raise ValueError(
                f"l2_normalization must be one of {list(L2_NORMALIZATIONS)}, "
                f"got {self.l2_normalization!r}"
            )
        if not isinstance(self.optimizer, str) or self.optimizer not in optimizers.OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(optimizers.OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        for name in ("early_stopping", "shuffle"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")

    # -- training ------------------------------------------------------------------------
    def _start(self, n_features: int, n_out: int, output: str) -> None:
        """A new network, optimizer state and curves (the first fit/partial_fit)."""
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self._seed = seed
        layers = [n_features, *self._hidden(), n_out]
        self.net_ = Network(
            layers, self.activation, output, init=self.init, seed=seed, dtype=self.dtype
        )
        self.loss_curve_, self.iteration_loss_curve_ = [], []
        self.n_iter_, self.t_ = 0, 0

    def _epoch(self, X, Y) -> float:
        """One epoch of deepgrad training on (X, Y) (Y as the network wants it)."""
        m = X.shape[0]
        b = "auto" if self.batch_size == "auto" else min(self.batch_size or m, m)
        # The network keeps its optimizer state (net_.training): each epoch goes on from it.
        optimizer = optimizers.get(self.optimizer, self.learning_rate)
        epoch_seed = int(np.random.SeedSequence([self._seed, self.n_iter_]).generate_state(1)[0])
        with warnings.catch_warnings():
            # One epoch per call: a rise within it, measured from its own first batch,
            # says little (scikit-learn's MLP does not warn either).
            warnings.simplefilter("ignore", DivergenceWarning)
            history = self._train_one_epoch(X, Y, b, optimizer, epoch_seed)
        self.engine_ = history.engine
        self.n_iter_ += 1
        self.t_ += m
        self.loss_curve_.append(history.epoch_cost[-1])
        self.iteration_loss_curve_.extend(history.iteration_cost)
        if self.verbose:
            print(f"Epoch {self.n_iter_}, loss = {self.loss_curve_[-1]:.8f}")
        return self.loss_curve_[-1]

    def _train_one_epoch(self, X, Y, batch_size, optimizer, seed):
        return _train(
            self.net_,
            X,
            Y,
            batch_size=batch_size,
            epochs=1,
            l2=self.l2,
            l2_normalization=self.l2_normalization,
            optimizer=optimizer,
            keep_prob=self.keep_prob,
            seed=seed,
            shuffle=bool(self.shuffle),
            progress=False,
        )

    def _fit_epochs(self, X, Y, y_raw) -> None:
        """Epochs until ``epochs`` or until the loss (or the validation score, with
        early_stopping) stops improving by ``tol`` for ``n_iter_no_change`` epochs."""
        Xv = yv = None
        if self.early_stopping:
            stratify = y_raw if self._output != "linear" else None
            X, Xv, Y, yv = train_test_split(
                X, Y, test_size=self.validation_fraction, random_state=self._seed, stratify=stratify
            )
        self.best_loss_, self.validation_scores_ = np.inf, []
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        # The loss or the validation score, on fit's early-stopping tracker.
        monitor = "score" if self.early_stopping else "val_cost"
        stopper = EarlyStopping(self.n_iter_no_change, monitor, self.tol)
        for epoch in range(self.epochs):
            loss = self._epoch(X, Y)
            self.best_loss_ = min(self.best_loss_, loss)
            if self.early_stopping:
                score = self._validation_score(Xv, yv)
                self.validation_scores_.append(score)
                self.best_validation_score_ = max(self.best_validation_score_, score)
            if stopper.update(epoch, score if self.early_stopping else loss, self.net_.params):
                break
        if self.early_stopping and stopper.best_params is not None:
            self.net_.params = stopper.best_params  # the parameters of the best validation score

    def _validation_score(self, Xv, yv) -> float:
        pred = np.asarray(self.net_.predict(Xv))
        if self._output == "linear":
            return float(r2_score(yv, pred))
        return float(accuracy_score(yv, pred))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


class DeepClassifier(ClassifierMixin, _DeepBase):
    """A deep fully-connected classifier trained by deepgrad (softmax for k > 2 classes,
    one sigmoid unit for 2).

    Parameters
    ----------
    hidden_layer_sizes : tuple of ints, default (100,)
        Widths of the hidden layers n^[1], ..., n^[L-1].
    activation : {"relu", "leaky_relu", "tanh", "sigmoid", "linear"}, default "relu"
    init : initializer name (``deepgrad.initializers.names()``) or callable, default "auto"
    batch_size : int, "auto" (min(64, m), as ``Network.fit``) or None (batch gradient descent)
    epochs : int, default 200
        Most passes over the data (fewer when the loss stops improving, see ``tol``).
    learning_rate : float, default 0.1
    l2 : float, default 1e-4
        lambda of the seed's L2 term lambda/(2 m) sum ||W||_F^2.
    l2_normalization : {"batch", "dataset"}, default "batch"
    optimizer : str, default "gd"
        A name in ``deepgrad.optimizers.OPTIMIZERS``, checked when fit is called.
    keep_prob : float in (0, 1], default 1.0 (no dropout)
    early_stopping : bool, default False
        Hold out ``validation_fraction`` (stratified) and stop when its accuracy has not
        improved by ``tol`` for ``n_iter_no_change`` epochs; keep the best parameters.
    validation_fraction, n_iter_no_change, tol : as in scikit-learn's MLPClassifier.
    shuffle : bool, default True
    random_state : int, RandomState or None
    verbose : bool, default False (print the loss after every epoch)
    dtype : {"float64", "float32"}, default "float64"

    Attributes
    ----------
    net_ : deepgrad.Network, the trained network.
    classes_ : (n_classes,) the class labels.
    n_features_in_ : int; feature_names_in_ when fitted on a DataFrame.
    loss_curve_ : list, the cost J per epoch (mean of the mini-batch costs).
    iteration_loss_curve_ : list, J^{t} of every mini-batch.
    n_iter_ : int, epochs run; t_ : int, training examples seen.
    engine_ : str, the training engine that ran the last epoch (deepgrad.train.engines).
    best_loss_, validation_scores_, best_validation_score_ : as in MLPClassifier.
    """

    def fit(self, X, y):
        """Train a new network on X (m, n_features), y (m,); returns self."""
        self._validate_hyperparameters()
        X, y = validate_data(self, X, y, reset=True, dtype=("float64", "float32"))
        warn_if_unscaled(X, SCALE_FIX)
        self.classes_ = self._check_labels(y)
        Y = self._encode(y)
        self._start(X.shape[1], self._n_out(), self._output)
        self._fit_epochs(X, Y, Y)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch on (X, y), going on from the current network and optimizer state.

        ``classes`` (all the labels that will ever be seen) is needed on the first call.
        """
        first = not hasattr(self, "net_")
        if first:
            self._validate_hyperparameters()
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = validate_data(self, X, y, reset=first, dtype=("float64", "float32"))
        if first:
            self.classes_ = self._check_labels(np.asarray(classes))
            self._start(X.shape[1], self._n_out(), self._output)
        check_classification_targets(y)
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(
                f"y has labels {unseen[:5].tolist()} not in classes_ {self.classes_[:10].tolist()}"
            )
        self._epoch(X, self._encode(y))
        return self

    def _check_labels(self, y) -> np.ndarray:
        check_classification_targets(y)
        if type_of_target(y) not in ("binary", "multiclass"):
            raise ValueError(f"y must hold one class label per example, got {type_of_target(y)}")
        self._encoder = LabelEncoder().fit(y)
        classes = self._encoder.classes_
        if len(classes) < 2:
            raise ValueError(
                f"y has only one class ({classes[0]!r}); a classifier needs at least 2 classes"
            )
        self._output = "sigmoid" if len(classes) == 2 else "softmax"
        return classes

    def _n_out(self) -> int:
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _encode(self, y) -> np.ndarray:
        return self._encoder.transform(y).astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (m, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=("float64", "float32"))
        P = np.asarray(self.net_.predict_proba(X), dtype=np.float64)
        return np.hstack([1.0 - P, P]) if P.shape[1] == 1 else P

    def predict_log_proba(self, X) -> np.ndarray:
        """log of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Class labels (m,)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=("float64", "float32"))
        return self.classes_[np.asarray(self.net_.predict(X), dtype=np.int64)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags


class DeepRegressor(RegressorMixin, _DeepBase):
    """A deep fully-connected regressor trained by deepgrad (linear output, half mean
    squared error); y may have several columns. Parameters and attributes as
    ``DeepClassifier`` (early stopping watches the validation R^2), except:

    - the default ``learning_rate`` is 0.01;
    - the network learns the standardized targets (y - y_mean_) / y_scale_ (so one learning
      rate suits any units of y); predictions are mapped back, and ``loss_curve_`` is in
      standardized units. ``partial_fit`` takes mean and scale from its first batch.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        init="auto",
        batch_size="auto",
        epochs=200,
        learning_rate=0.01,
        l2=1e-4,
        l2_normalization="batch",
        optimizer="gd",
        keep_prob=1.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        shuffle=True,
        random_state=None,
        verbose=False,
        dtype="float64",
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            init=init,
            batch_size=batch_size,
            epochs=epochs,
            learning_rate=learning_rate,
            l2=l2,
            l2_normalization=l2_normalization,
            optimizer=optimizer,
            keep_prob=keep_prob,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            shuffle=shuffle,
            random_state=random_state,
            verbose=verbose,
            dtype=dtype,
        )

    def fit(self, X, y):
        """Train a new network on X (m, n_features), y (m,) or (m, n_outputs); returns self."""
        self._validate_hyperparameters()
        X, y = validate_data(
            self, X, y, reset=True, multi_output=True, y_numeric=True, dtype=("float64", "float32")
        )
        warn_if_unscaled(X, SCALE_FIX)
        self._output = "linear"
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._scale_targets(y)
        self._start(X.shape[1], self.n_outputs_, "linear")
        self._fit_epochs(X, self._to_unit(y), None)
        return self

    def _scale_targets(self, y) -> None:
        """Remember mean and std of y: the network learns (y - mean) / std, so plain gradient
        descent with one learning rate works whatever the units of y."""
        self.y_mean_ = np.mean(y, axis=0)
        std = np.std(y, axis=0)
        self.y_scale_ = np.where(std > 0, std, 1.0)

    def _to_unit(self, y):
        return (y - self.y_mean_) / self.y_scale_

    def partial_fit(self, X, y):
        """One epoch on (X, y), going on from the current network and optimizer state."""
        first = not hasattr(self, "net_")
        if first:
            self._validate_hyperparameters()
        X, y = validate_data(
            self, X, y, reset=first, multi_output=True, y_numeric=True, dtype=("float64", "float32")
        )
        n_out = 1 if y.ndim == 1 else y.shape[1]
        if first:
            self._output, self.n_outputs_ = "linear", n_out
            self._scale_targets(y)
            self._start(X.shape[1], n_out, "linear")
        elif n_out != self.n_outputs_:
            raise ValueError(
                f"y has {n_out} outputs but the regressor was fitted with {self.n_outputs_}"
            )
        self._epoch(X, self._to_unit(y))
        return self

    def predict(self, X) -> np.ndarray:
        """Predictions (m,) for one output, (m, n_outputs) for several."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=("float64", "float32"))
        out = np.asarray(self.net_.predict(X), dtype=np.float64).reshape(X.shape[0], -1)
        out = out * self.y_scale_ + self.y_mean_
        return out.reshape(-1) if self.n_outputs_ == 1 else out.reshape(-1, self.n_outputs_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
