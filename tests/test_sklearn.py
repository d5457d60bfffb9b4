"""The scikit-learn estimators: scikit-learn's own checks, meta-estimators, and accuracy
side by side with MLPClassifier."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, make_regression
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from deepgrad.optim import optimizers
from deepgrad.sklearn import DeepClassifier, DeepRegressor


# No expected failures: every check of scikit-learn's suite runs and must pass.
# (Their data is unscaled on purpose; the warning that says so is tested below.)
@pytest.mark.filterwarnings("ignore::deepgrad.UnscaledFeaturesWarning")
@parametrize_with_checks([DeepClassifier(), DeepRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_pipeline(digits):
    Xtr, Xte, ytr, yte = digits
    pipe = make_pipeline(
        StandardScaler(),
        DeepClassifier((64, 32), batch_size=32, epochs=20, learning_rate=0.05, random_state=0),
    )
    pipe.fit(Xtr * 16, ytr)
    assert pipe.score(Xte * 16, yte) > 0.95
    assert pipe.predict_proba(Xte[:5] * 16).shape == (5, 10)


def test_grid_search_picks_the_better_setting(digits):
    Xtr, _, ytr, _ = digits
    search = GridSearchCV(
        DeepClassifier((32,), batch_size=32, epochs=15, random_state=0),
        {"learning_rate": [1e-4, 0.2]},
        cv=3,
    )
    search.fit(Xtr, ytr)
    assert search.best_params_ == {"learning_rate": 0.2}
    assert search.best_score_ > 0.9
    assert search.best_estimator_.n_features_in_ == 64


def test_cross_val_score_classifier_and_regressor(digits):
    Xtr, _, ytr, _ = digits
    scores = cross_val_score(
        DeepClassifier((32,), batch_size=32, epochs=10, random_state=0), Xtr, ytr, cv=3
    )
    assert scores.shape == (3,) and scores.min() > 0.9
    X, y = make_regression(n_samples=300, n_features=5, noise=1.0, random_state=0)
    reg = make_pipeline(
        StandardScaler(),
        DeepRegressor((32,), batch_size=32, epochs=150, learning_rate=0.01, random_state=0),
    )
    r2 = cross_val_score(reg, X, y / y.std(), cv=3)
    assert r2.min() > 0.95


def _compare(X, y, hidden, batch, epochs, lr, l2, seeds=(0, 1, 2)):
    """Mean held-out accuracy of DeepClassifier and of MLPClassifier with the same plain
    mini-batch SGD (no momentum, constant step, same L2 convention, no early stop)."""
    ours, theirs = [], []
    for seed in seeds:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
        scaler = MinMaxScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), np.clip(scaler.transform(Xte), -1, 2)
        dc = DeepClassifier(
            hidden,
            batch_size=batch,
            epochs=epochs,
            learning_rate=lr,
            l2=l2,
            n_iter_no_change=epochs,
            random_state=seed,
        ).fit(Xtr, ytr)
        mlp = MLPClassifier(
            hidden,
            solver="sgd",
            momentum=0.0,
            learning_rate="constant",
            learning_rate_init=lr,
            alpha=l2,
            batch_size=batch,
            max_iter=epochs,
            n_iter_no_change=epochs,
            tol=0.0,
            random_state=seed,
        )
        with _no_convergence_warning():
            mlp.fit(Xtr, ytr)
        ours.append(dc.score(Xte, yte))
        theirs.append(mlp.score(Xte, yte))
    return float(np.mean(ours)), float(np.mean(theirs))


def _no_convergence_warning():
    import warnings
    from contextlib import contextmanager

    from sklearn.exceptions import ConvergenceWarning

    @contextmanager
    def ctx():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached on purpose
            yield

    return ctx()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "hidden", "batch", "epochs", "lr"),
    [
        ("digits", (32, 32, 16), 32, 30, 0.1),
        ("breast_cancer", (32,), 32, 30, 0.05),
    ],
)
def test_accuracy_at_least_mlpclassifier(name, hidden, batch, epochs, lr):
    load = {"digits": load_digits, "breast_cancer": load_breast_cancer}[name]
    X, y = load(return_X_y=True)
    ours, theirs = _compare(X, y, hidden, batch, epochs, lr, l2=1e-4, seeds=range(5))
    print(f"{name}: DeepClassifier {ours:.4f}, MLPClassifier {theirs:.4f}")
    assert ours >= theirs
    assert ours > (0.96 if name == "digits" else 0.93)


def test_partial_fit_goes_on_where_fit_would(digits):
    Xtr, Xte, ytr, yte = digits
    clf = DeepClassifier((32,), batch_size=32, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(Xtr, ytr)
    for _ in range(5):
        clf.partial_fit(Xtr, ytr, classes=np.arange(10))
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5
    assert len(clf.iteration_loss_curve_) == 5 * int(np.ceil(len(ytr) / 32))
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    full = DeepClassifier((32,), batch_size=32, epochs=5, n_iter_no_change=5, random_state=0).fit(
        Xtr, ytr
    )
    # fit = partial_fit epoch after epoch (same seeds, same carried optimizer state)
    for k in full.net_.params:
        np.testing.assert_array_equal(full.net_.params[k], clf.net_.params[k])
    with pytest.raises(ValueError, match=r"labels \[11\] not in classes_"):
        clf.partial_fit(Xtr[:3], [1, 2, 11])
    with pytest.raises(ValueError, match="X has 63 features"):
        clf.partial_fit(Xtr[:, 1:], ytr)


def test_string_labels_binary_proba_and_curves():
    X, y = load_breast_cancer(return_X_y=True)
    X = MinMaxScaler().fit_transform(X)
    labels = np.array(["malignant", "benign"])[y]
    clf = DeepClassifier((16,), batch_size=32, epochs=15, random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["benign", "malignant"]
    P = clf.predict_proba(X)
    assert P.shape == (len(y), 2) and np.allclose(P.sum(1), 1)
    assert set(clf.predict(X)) <= {"benign", "malignant"}
    assert np.array_equal(clf.predict(X), clf.classes_[P.argmax(1)])
    assert clf.score(X, labels) > 0.94
    assert len(clf.loss_curve_) == clf.n_iter_ <= 15
    assert clf.t_ == clf.n_iter_ * len(y)


def test_early_stopping_keeps_the_best_validation_parameters(digits):
    Xtr, _, ytr, _ = digits
    clf = DeepClassifier(
        (32,), batch_size=32, epochs=100, early_stopping=True, n_iter_no_change=3, random_state=0
    ).fit(Xtr, ytr)
    assert clf.n_iter_ < 100
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9


def test_regressor_multi_output_and_float32():
    X, Y = make_regression(n_samples=200, n_features=4, n_targets=3, random_state=0)
    Y = Y / Y.std(0)
    reg = DeepRegressor(
        (32,), batch_size=32, epochs=100, learning_rate=0.01, random_state=0, dtype="float32"
    ).fit(X, Y)
    assert reg.predict(X).shape == (200, 3) and reg.n_outputs_ == 3
    assert reg.score(X, Y) > 0.95
    assert reg.net_.params["W1"].dtype == np.float32


def test_clone_pickle_get_set_params(digits):
    Xtr, Xte, ytr, _ = digits
    clf = DeepClassifier((16,), epochs=3, random_state=0)
    assert clf.get_params()["hidden_layer_sizes"] == (16,)
    clf.set_params(learning_rate=0.2, optimizer="sgd")
    assert clone(clf).get_params() == clf.get_params()
    clf.fit(Xtr, ytr)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(Xte), clf.predict_proba(Xte))


def test_optimizer_names_come_from_the_registry(digits, monkeypatch):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match=r"optimizer must be one of \[.*'adam'.*\], got 'lbfgs'"):
        DeepClassifier(optimizer="lbfgs").fit(Xtr, ytr)
    seen = []

    def spy_adam(learning_rate):
        seen.append(learning_rate)
        return optimizers.adam(learning_rate)

    monkeypatch.setitem(optimizers.OPTIMIZERS, "adam", spy_adam)
    DeepClassifier((8,), optimizer="adam", learning_rate=0.003, epochs=1).fit(Xtr, ytr)
    assert seen == [0.003]


def test_verbose_prints_one_line_per_epoch(digits, capsys):
    Xtr, _, ytr, _ = digits
    DeepClassifier((8,), epochs=3, n_iter_no_change=3, verbose=True, random_state=0).fit(Xtr, ytr)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("Epoch 1, loss = ")


def test_raw_unscaled_features_warn():
    from sklearn.datasets import load_breast_cancer

    import deepgrad as dg

    X, y = load_breast_cancer(return_X_y=True)
    with pytest.warns(dg.UnscaledFeaturesWarning, match="StandardScaler"):
        DeepClassifier(hidden_layer_sizes=(8,), epochs=1).fit(X, y)
