"""Forward, cost and backward of the core network: proven against central differences and
against numbers worked out by hand."""

import numpy as np
import pytest

import deepgrad as dg
from conftest import central_differences, rel_error
from deepgrad.core import losses
from deepgrad.core import network as nw

HIDDEN = ["relu", "leaky_relu", "tanh", "sigmoid", "linear"]
OUTPUTS = ["sigmoid", "softmax", "linear"]


def _problem(output, rng, m=7, n_in=4, n_out=3):
    X = rng.standard_normal((m, n_in))
    if output == "sigmoid":
        Y = (rng.random((m, n_out)) < 0.5).astype(float)
    elif output == "softmax":
        Y = rng.integers(0, n_out, m)
    else:
        Y = rng.standard_normal((m, n_out))
    return X, Y


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output", OUTPUTS)
def test_backprop_matches_central_differences(hidden, output, rng):
    X, Y = _problem(output, rng)
    net = dg.Network([4, 5, 6, 3], hidden, output, init="xavier_normal", seed=3, dtype="float64")
    # Keep ReLU pre-activations away from 0 so no +-eps step crosses a kink.
    for l in (1, 2):
        net.params[f"b{l}"] += 0.3
    J, grads = net.cost_and_gradients(X, Y, l2=0.1)
    approx = central_differences(lambda p: net.cost(X, Y, l2=0.1), net.params)
    assert rel_error(approx, grads) < 1e-7
    assert set(grads) == set(net.params)
    assert all(grads[k].shape == net.params[k].shape for k in grads)


def test_hand_worked_2_3_1_step():
    """A 2-3-1 ReLU/sigmoid net, one example, one GD step; every number derived by hand.

    W1 = [[1, 0], [0, 1], [1, 1]], b1 = 0, W2 = [[1, -1, 0.5]], b2 = 0, x = [1, 2], y = 1.
    Z1 = W1 x = [1, 2, 3]; A1 = relu(Z1) = [1, 2, 3]; Z2 = 1 - 2 + 1.5 = 0.5.
    A2 = sigma(0.5) = 0.6224593312; J = -log(0.6224593312) = 0.4740769842 (no L2).
    dZ2 = A2 - y = -0.3775406688; dW2 = dZ2 * A1 = [-0.37754, -0.75508, -1.13262]; db2 = dZ2.
    dA1 = W2^T dZ2 = [-0.37754, 0.37754, -0.18877]; relu' = 1 (all Z1 > 0) so dZ1 = dA1.
    dW1 = dZ1 x^T = [[-0.37754, -0.75508], [0.37754, 0.75508], [-0.18877, -0.37754]].
    With alpha = 0.1: W2 <- [1.037754, -0.924492, 0.613262], b2 <- 0.037754.
    """
    net = dg.Network([2, 3, 1], "relu", "sigmoid", init="zeros", dtype="float64")
    net.params["W1"] = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    net.params["W2"] = np.array([[1.0, -1.0, 0.5]])
    X, Y = np.array([[1.0, 2.0]]), np.array([1])
    J, g = net.cost_and_gradients(X, Y)
    a2 = 1 / (1 + np.exp(-0.5))
    assert J == pytest.approx(0.4740769842, abs=1e-9)
    d = a2 - 1
    np.testing.assert_allclose(g["W2"], [[d * 1, d * 2, d * 3]], atol=1e-12)
    np.testing.assert_allclose(g["b2"], [d], atol=1e-12)
    np.testing.assert_allclose(g["W1"], [[d, 2 * d], [-d, -2 * d], [0.5 * d, d]], atol=1e-12)
    np.testing.assert_allclose(g["b1"], [d, -d, 0.5 * d], atol=1e-12)
    net.fit(X, Y, batch_size=1, epochs=1, learning_rate=0.1, seed=0)
    np.testing.assert_allclose(net.params["W2"], [[1.0377541, -0.9244919, 0.6132623]], atol=1e-6)
    np.testing.assert_allclose(net.params["b2"], [0.0377541], atol=1e-6)


def test_l2_term_is_seed_formula(rng):
    net = dg.Network([3, 4, 1], seed=0, dtype="float64")
    X, Y = rng.standard_normal((10, 3)), rng.integers(0, 2, 10)
    penalty = sum(np.sum(net.params[f"W{l}"] ** 2) for l in (1, 2))
    assert net.cost(X, Y, l2=0.5) - net.cost(X, Y) == pytest.approx(0.5 / (2 * 10) * penalty)
    # Normalized by the training-set size instead of the batch.
    diff = net.cost(X, Y, l2=0.5, l2_normalization=1000) - net.cost(X, Y)
    assert diff == pytest.approx(0.5 / (2 * 1000) * penalty)


def test_l2_normalization_int_is_the_deprecated_l2_denominator_bit_for_bit(rng):
    net = dg.Network([3, 4, 2], "tanh", "softmax", seed=0, dtype="float64")
    X, Y = rng.standard_normal((10, 3)), rng.integers(0, 2, 10)
    masks = net.draw_masks(10, 0.8, np.random.default_rng(1))
    J = net.cost(X, Y, l2=0.3, masks=masks, l2_normalization=250)
    J2, grads = net.cost_and_gradients(X, Y, l2=0.3, masks=masks, l2_normalization=250)
    with pytest.warns(DeprecationWarning, match=r"l2_normalization=250") as seen:
        old = net.cost(X, Y, l2=0.3, masks=masks, l2_denominator=250)
        old2, old_grads = net.cost_and_gradients(X, Y, l2=0.3, masks=masks, l2_denominator=250)
    assert [w.filename for w in seen] == [__file__, __file__]  # points at the caller
    assert J == old and J2 == old2 == J
    for k in grads:
        np.testing.assert_array_equal(grads[k], old_grads[k])
    # "batch" (the default) is m_reg = the rows of X, the same bits as the int m
    assert net.cost(X, Y, l2=0.3) == net.cost(X, Y, l2=0.3, l2_normalization=10)
    assert net.cost(X, Y, l2=0.3, l2_normalization="batch") == net.cost(X, Y, l2=0.3)
    assert net.cost(X, Y, l2=0.3, masks=masks, l2_normalization=np.int64(250)) == J


def test_l2_normalization_and_l2_denominator_together_are_a_type_error(rng):
    net = dg.Network([3, 4, 1], seed=0, dtype="float64")
    X, Y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    with pytest.raises(TypeError, match="pass only l2_normalization"):
        net.cost(X, Y, l2=0.1, l2_normalization=5, l2_denominator=5)
    with pytest.raises(ValueError, match=r"'dataset' is fit's"):
        net.cost(X, Y, l2=0.1, l2_normalization="dataset")


@pytest.mark.parametrize("output", OUTPUTS)
def test_losses_stable_at_extreme_logits(output):
    Z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    if output == "sigmoid":
        Y = np.array([[1.0, 0.0], [1.0, 0.0]])
    elif output == "softmax":
        Y = np.array([[1.0, 0.0], [1.0, 0.0]])
    else:
        Y = np.zeros((2, 2))
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value = losses.get(output).loss_sum(Z, Y)
        A = losses.get(output).activation(Z)
    assert np.isfinite(value) and np.all(np.isfinite(A))
    if output != "linear":
        # the second example is confidently wrong by 2000 (softmax) or 1000 + 1000 (sigmoid)
        assert value == pytest.approx(2000.0)


def test_dropout_masks_repeatable_and_inverted(rng):
    net = dg.Network([5, 50, 50, 1], "relu", seed=0, dtype="float64")
    X, Y = rng.standard_normal((200, 5)), rng.integers(0, 2, 200)
    masks = net.draw_masks(200, 0.8, np.random.default_rng(7))
    assert set(np.unique(masks[0])) <= {0.0, 1 / 0.8}
    assert abs((masks[0] > 0).mean() - 0.8) < 0.03
    again = net.draw_masks(200, 0.8, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(masks, again, strict=True))
    assert net.cost(X, Y, masks=masks) == net.cost(X, Y, masks=again)
    assert net.cost(X, Y, masks=masks) != net.cost(X, Y)
    J, grads = net.cost_and_gradients(X, Y, l2=0.1, masks=masks)
    approx = central_differences(lambda p: net.cost(X, Y, l2=0.1, masks=masks), net.params)
    assert rel_error(approx, grads) < 1e-6  # ReLU: a few elements may sit near a kink


def test_flatten_is_the_seed_concatenation():
    net = dg.Network([3, 4, 2], seed=0)
    theta, unflatten = dg.flatten(net.params)
    assert theta.shape == (net.n_params,) == (3 * 4 + 4 + 4 * 2 + 2,)
    np.testing.assert_array_equal(theta[:12], net.params["W1"].ravel())
    np.testing.assert_array_equal(theta[12:16], net.params["b1"])
    back = unflatten(theta)
    assert all(np.array_equal(back[k], net.params[k]) for k in net.params)


def test_spec_shapes_are_the_seed_shapes():
    net = dg.Network([64, 128, 64, 10], output="softmax", init="he_normal", seed=0)
    assert net.params["W1"].shape == (128, 64) and net.params["b1"].shape == (128,)
    assert net.params["W3"].shape == (10, 64)
    assert list(net.params) == nw.param_names(3)
    assert all(p.dtype == np.float32 for p in net.params.values())


def test_predict_shapes(rng):
    X = rng.standard_normal((6, 4))
    assert dg.Network([4, 3, 1], seed=0).predict(X).shape == (6,)
    assert dg.Network([4, 3, 5], output="softmax", seed=0).predict_proba(X).shape == (6, 5)
    np.testing.assert_allclose(
        dg.Network([4, 3, 5], output="softmax", seed=0).predict_proba(X).sum(1), 1, rtol=1e-5
    )
    assert dg.Network([4, 3, 2], output="linear", seed=0).predict(X).shape == (6, 2)
