import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def central_differences(f, params: dict, eps: float = 1e-6) -> dict:
    """Plain two-sided differences of a scalar function of a params dict (test oracle)."""
    out = {}
    for k, p in params.items():
        g = np.zeros_like(p)
        it = np.nditer(p, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = p[i]
            p[i] = old + eps
            plus = f(params)
            p[i] = old - eps
            minus = f(params)
            p[i] = old
            g[i] = (plus - minus) / (2 * eps)
        out[k] = g
    return out


def rel_error(a: dict, b: dict) -> float:
    x = np.concatenate([np.ravel(a[k]) for k in a])
    y = np.concatenate([np.ravel(b[k]) for k in a])
    return float(np.linalg.norm(x - y) / (np.linalg.norm(x) + np.linalg.norm(y)))
