"""Every initializer is tested on its variance (big matrices, several seeds)."""

import numpy as np
import pytest

from deepgrad.core import initializers as ini

SHAPE = (400, 600)  # (fan_out, fan_in): fan_avg = 500
FAN_IN, FAN_OUT = 600, 400

EXPECTED = {
    "lecun_normal": 1 / FAN_IN,
    "lecun_uniform": 1 / FAN_IN,
    "he_normal": 2 / FAN_IN,
    "he_uniform": 2 / FAN_IN,
    "xavier_normal": 2 / (FAN_IN + FAN_OUT),
    "xavier_uniform": 2 / (FAN_IN + FAN_OUT),
    "glorot_normal": 2 / (FAN_IN + FAN_OUT),
    "random": 1e-4,
    "standard_normal": 1.0,
    "zeros": 0.0,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_variance_matches_formula(name, seed):
    W = ini.get(name)(SHAPE, np.random.default_rng(seed), "float64")
    assert W.shape == SHAPE
    # 240,000 samples: the sample variance has relative std sqrt(2/N) ~ 0.3%.
    assert W.var() == pytest.approx(EXPECTED[name], rel=0.02, abs=1e-12)
    assert abs(W.mean()) < 5 * np.sqrt(EXPECTED[name] / W.size) + 1e-12
    assert ini.predicted_variance(ini.get(name), SHAPE) == pytest.approx(EXPECTED[name])


@pytest.mark.parametrize("mode", ini.MODES)
@pytest.mark.parametrize("dist", ini.DISTRIBUTIONS)
def test_variance_scaling_every_mode_and_distribution(mode, dist):
    n = {"fan_in": FAN_IN, "fan_out": FAN_OUT, "fan_avg": 500}[mode]
    W = ini.variance_scaling(3.0, mode, dist)(SHAPE, np.random.default_rng(5), "float64")
    assert W.var() == pytest.approx(3.0 / n, rel=0.02)
    if dist == "truncated_normal":
        # truncated at two (corrected) standard deviations
        assert np.abs(W).max() <= 2 * np.sqrt(3.0 / n) / 0.87962566103423978 + 1e-12
    if dist == "uniform":
        assert np.abs(W).max() <= np.sqrt(9.0 / n)


def test_orthogonal_rows_are_orthonormal_times_gain():
    W = ini.orthogonal(np.sqrt(2))((64, 128), np.random.default_rng(0), "float64")
    np.testing.assert_allclose(W @ W.T, 2 * np.eye(64), atol=1e-10)
    W = ini.orthogonal(1.0)((128, 64), np.random.default_rng(0), "float64")
    np.testing.assert_allclose(W.T @ W, np.eye(64), atol=1e-10)


def test_auto_picks_by_activation():
    assert ini.get("auto", activation="relu") is ini.he_normal
    assert ini.get("auto", activation="leaky_relu") is ini.he_normal
    assert ini.get("auto", activation="tanh") is ini.xavier_normal
    assert ini.get("auto", activation="sigmoid") is ini.xavier_normal
    assert ini.get("auto", activation="linear") is ini.lecun_normal


def test_dtype_and_determinism():
    a = ini.he_normal((3, 4), np.random.default_rng(9), "float32")
    b = ini.he_normal((3, 4), np.random.default_rng(9), "float32")
    assert a.dtype == np.float32 and np.array_equal(a, b)


def test_bad_names_and_arguments():
    with pytest.raises(ValueError, match="init must be one of .*he_normal"):
        ini.get("kaiming")
    with pytest.raises(ValueError, match="mode must be one of"):
        ini.variance_scaling(1.0, "fan_middle")
    with pytest.raises(ValueError, match="distribution must be one of"):
        ini.variance_scaling(1.0, "fan_in", "cauchy")
    with pytest.raises(ValueError, match="scale must be"):
        ini.variance_scaling(-1.0)
    with pytest.raises(ValueError, match="shape must be"):
        ini.he_normal((3,), np.random.default_rng(0))
