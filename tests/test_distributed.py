"""Data-parallel training over MPI equals single-process training (deepgrad.train.distributed).

The MPI tests launch ``mpiexec -n P`` (P = 1, 2, 3 on however many cores there are:
hydra allows oversubscription) running tests/mpi_scripts/*.py, and compare what rank 0
wrote with single-process training in this process. They skip when mpi4py or mpiexec is
missing; ``make install`` installs both (the ``mpi`` extra: mpi4py and the mpich wheel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.cli.main import main
from deepgrad.train import distributed

HERE = Path(__file__).parent
SCRIPTS = HERE / "mpi_scripts"
SRC = HERE.parent / "src"
sys.path.insert(0, str(SCRIPTS))

from cases import CASES, make_data, run_case  # noqa: E402


def _mpiexec(n, argv, timeout=120):
    pytest.importorskip("mpi4py")
    try:
        cmd, env = distributed.local_mpiexec(n, argv)
    except distributed.MPIUnavailableError as exc:
        pytest.skip(str(exc))
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SCRIPTS), env.get("PYTHONPATH", "")])
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi_data")
    X, y2, y3 = make_data()
    np.save(d / "X.npy", X)
    np.save(d / "y2.npy", y2)
    np.save(d / "y3.npy", y3)
    return d


@pytest.fixture(scope="module")
def single(data_dir):
    """Single-process results, on the same arrays as train.py: memory-mapped X for the
    memmap cases (the block shuffle runs on memory-mapped data only)."""
    X, y2, y3 = make_data()
    Xmm = np.load(data_dir / "X.npy", mmap_mode="r")
    return {
        name: run_case(name, Xmm if c.get("memmap") else X, y2, y3) for name, c in CASES.items()
    }


# ---- under mpiexec: equal to single-process --------------------------------------------


@pytest.mark.parametrize("P", [1, 2, 3])
def test_distributed_equals_single_process(P, data_dir, single, tmp_path):
    out = tmp_path / "out.npz"
    proc = _mpiexec(P, [sys.executable, str(SCRIPTS / "train.py"), str(data_dir), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    z = np.load(out)
    assert int(z["size"]) == P
    for name, ref in single.items():
        tol = 1e-12 if CASES[name]["dtype"] == "float64" else 1e-5
        for k, v in ref.params.items():
            assert _rel(z[f"{name}/{k}"], v) < tol, (name, k)
        # iteration costs are the global mini-batch costs, one per global batch
        np.testing.assert_allclose(z[f"{name}/iteration_cost"], ref.iteration_cost, rtol=tol)
        np.testing.assert_allclose(z[f"{name}/val_cost"], ref.val_cost, rtol=tol)
        if P == 1 and ref.engine == "numpy-shards":
            # one rank runs numpy-shards' step on the whole batch (one shard at these
            # sizes): the same bits (single-process fits of small steps run compiled,
            # and "momentum", a user's optimizer, on the reference engine)
            for k, v in ref.params.items():
                np.testing.assert_array_equal(z[f"{name}/{k}"], v, err_msg=f"{name} {k}")


def test_cases_cover_the_awkward_batches():
    # The equivalence test is only as good as its cases: a batch not divisible by 2 or 3,
    # a last partial batch smaller than 3 (a rank with no rows), several steps per epoch.
    m = make_data()[0].shape[0]
    sizes = {c["batch_size"] for c in CASES.values()} - {None}
    assert any(b % 2 and b % 3 for b in sizes)
    assert any(0 < m % b < 3 for b in sizes)
    assert any(CASES[c].get("keep_prob", 1) < 1 for c in CASES)
    assert any(CASES[c]["opt"] != "gd" for c in CASES)
    # ... and memory-mapped data on which the block shuffle really runs (not a uniform
    # order: the distributed loop once used that, and only a case like this can tell)
    from deepgrad.data import arrays as data

    blocks = [c for c in CASES.values() if c.get("memmap") and c.get("block_bytes")]
    assert blocks
    for c in blocks:
        rows = c["block_bytes"] // (8 * make_data()[0].shape[1])
        assert rows >= 1 and m > rows * 32  # more than one window of 32 blocks
        assert not np.array_equal(
            data.epoch_permutation(m, 11, 0, block=rows), data.epoch_permutation(m, 11, 0)
        )


@pytest.mark.parametrize(
    "mode, needle",
    [
        ("raise", "rank 1 of 3 failed; aborting all ranks"),
        ("die", ""),
        ("drift", "differ between ranks after epoch 1"),
    ],
)
def test_a_failing_rank_stops_all_ranks(mode, needle):
    # Without MPI_Abort (raise) or mpiexec's cleanup (die), ranks 0 and 2 would wait in
    # their next Allreduce until the timeout; the checksum catches parameters that drift.
    proc = _mpiexec(3, [sys.executable, str(SCRIPTS / "misbehave.py"), mode], timeout=60)
    assert proc.returncode != 0
    assert needle in proc.stderr + proc.stdout
    assert "finished" not in proc.stdout


def test_a_stopped_rank_is_named_and_the_job_ends():
    # SIGSTOP: the rank is alive but silent; without the timeout the others spin forever
    proc = _mpiexec(3, [sys.executable, str(SCRIPTS / "misbehave.py"), "stop"], timeout=60)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if "stopped answering" in l]
    assert lines and all("rank(s) 1 stopped answering" in l for l in lines), proc.stderr
    assert "DEEPGRAD_MPI_TIMEOUT" in lines[0] and "finished" not in proc.stdout


def test_the_mpi_timeout_is_validated(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="DEEPGRAD_MPI_TIMEOUT must be a number of seconds"):
        distributed.collective_timeout()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2.5")
    assert distributed.collective_timeout() == 2.5


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--mpi-timeout", "5"], "--mpi-timeout applies to --distributed training only"),
        (["--mpi-timeout", "0", "--distributed"], "--mpi-timeout"),
        (["--mpi-timeout", "nan", "--distributed"], "--mpi-timeout"),
    ],
)
def test_cli_mpi_timeout_is_checked_before_any_work(flags, needle, tmp_path, capsys):
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_distributed_matches_single_process(data_dir, tmp_path, capsys):
    # deepgrad train --data DIR reads X.npy/y.npy memory-mapped; rank 0 alone writes/prints.
    d = tmp_path / "data"
    d.mkdir()
    np.save(d / "X.npy", np.load(data_dir / "X.npy").astype(np.float32))
    np.save(d / "y.npy", np.load(data_dir / "y2.npy"))
    args = ["train", "--data", str(d), "--hidden", "6,4", "--batch-size", "7", "--epochs", "2"]
    args += ["--l2", "0.01", "--seed", "5", "--test-fraction", "0"]  # all rows, as before
    assert main([*args, "--quiet", "--out", str(tmp_path / "single")]) == 0
    capsys.readouterr()
    out = tmp_path / "dist"
    cli = [sys.executable, "-m", "deepgrad", *args, "--out", str(out), "--distributed"]
    proc = _mpiexec(3, cli)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 16 iterations") == 1  # rank 0 only
    ref = dg.load(tmp_path / "single" / "model.npz")
    got = dg.load(out / "model.npz")
    for k, v in ref.params.items():
        assert _rel(got.params[k], v) < 1e-5, k
    assert (out / "history.json").is_file() and (out / "learning_curves.png").is_file()


def test_divergence_stops_every_rank_at_the_same_step():
    # cost and gradients are global, so every rank sees the NaN/inf at the same step
    proc = _mpiexec(3, [sys.executable, str(SCRIPTS / "misbehave.py"), "diverge"], timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stopped = json.loads(proc.stdout.strip().splitlines()[-1])  # h.stopped of every rank
    assert len(stopped) == 3 and len(set(stopped)) == 1  # the same message on all
    X = make_data()[0]  # ... and at the step where single-process training stops
    net = dg.Network([5, 7, 4, 1], "linear", "linear", seed=3, dtype="float64")
    h = net.fit(X, X[:, 0] * 10, batch_size=7, epochs=3, learning_rate=1.0, seed=1,
                on_divergence="stop", progress=False)  # fmt: skip
    where = h.stopped.split(":")[0]  # "diverged at epoch 1, iteration 5"
    assert where.startswith("diverged at") and where in stopped[0]


def test_one_rank_failing_to_load_fails_all(tmp_path):
    # agree(): a file that only rank 0 cannot read ends every rank with an error, no hang.
    script = tmp_path / "load.py"
    script.write_text(
        "from deepgrad.train import distributed\n"
        "def load():\n"
        "    if distributed.rank() == 0:\n"
        "        raise OSError('X.npy: no such file on this machine')\n"
        "    return 1\n"
        "distributed.agree(distributed.world(), load)\n"
    )
    proc = _mpiexec(2, [sys.executable, str(script)], timeout=60)
    assert proc.returncode != 0
    assert "rank 0 of 2 failed: OSError: X.npy: no such file" in proc.stderr


# ---- without MPI: clear one-line errors and the pure helpers ---------------------------


def test_cli_distributed_outside_mpiexec_is_one_line(monkeypatch, capsys):
    for v in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    pytest.importorskip("mpi4py")
    assert main(["train", "--data", "iris", "--distributed", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mpiexec -n 4 deepgrad train" in err


def test_cli_distributed_without_mpi4py_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    assert main(["train", "--data", "iris", "--distributed", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'deepgrad[mpi]'" in err


def test_fit_distributed_outside_mpiexec_raises(monkeypatch):
    for v in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    net = dg.Network([2, 3, 1], seed=0)
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(distributed.MPIUnavailableError, match="MPI launcher|mpi4py"):
        net.fit(X, y, epochs=1, distributed=True)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 1001])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shard_bounds_partition_the_batch(n, size):
    bounds = [distributed.shard_bounds(n, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    counts = [hi - lo for lo, hi in bounds]
    assert max(counts) - min(counts) <= 1


def test_state_checksum_sees_one_ulp_anywhere():
    p = {"W1": np.ones((3, 2)), "b1": np.zeros(3)}
    state = ({"v": np.zeros(3)}, 4)
    c0 = distributed.state_checksum(p, state)
    assert distributed.state_checksum({k: v.copy() for k, v in p.items()}, state) == c0
    p2 = {"W1": p["W1"].copy(), "b1": p["b1"].copy()}
    p2["W1"][2, 1] = np.nextafter(1.0, 2.0)
    assert distributed.state_checksum(p2, state) != c0
    assert distributed.state_checksum(p, ({"v": np.zeros(3)}, 5)) != c0


def test_options_take_fit_defaults_and_reject_unknown_ones():
    import inspect

    from deepgrad.train.api import fit
    from deepgrad.train.options import FitOptions

    o = FitOptions(epochs=3)
    assert o.epochs == 3 and not hasattr(o, "distributed")
    params = inspect.signature(fit).parameters
    for name in FitOptions.__dataclass_fields__:  # fit's defaults are the options' defaults
        assert params[name].default == getattr(FitOptions(), name), name
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        FitOptions(bogus=1)


# ---- checkpoints: rank 0 reads and writes, a restart of all ranks resumes -------------


@pytest.mark.slow
def test_restart_of_all_ranks_resumes_from_the_checkpoint(tmp_path):
    # fit(checkpoint=PATH) from deepgrad.train.checkpoint, with rank 0 as the only reader/writer.
    script = str(SCRIPTS / "ckpt.py")
    ref, crashed = tmp_path / "ref.npz", tmp_path / "crashed.npz"
    p = _mpiexec(2, [sys.executable, script, str(tmp_path / "ref.ckpt.npz"), str(ref), "2"])
    assert p.returncode == 0, p.stderr[-3000:]
    ck = str(tmp_path / "run.ckpt.npz")
    # rank 0 dies after iteration 9 (epoch 2, the last checkpoint at iteration 8) ...
    p = _mpiexec(2, [sys.executable, script, ck, str(crashed), "2", "9"], timeout=60)
    assert p.returncode != 0 and not crashed.exists()
    # ... and all ranks are restarted with the same command: they go on from the checkpoint
    p = _mpiexec(2, [sys.executable, script, ck, str(crashed), "2"])
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = np.load(ref), np.load(crashed)
    for k in a.files:  # the same operations in the same order: the same bits
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # a restart on 3 ranks from the same crash: equal up to the order of summation
    ck3, out3 = str(tmp_path / "run3.ckpt.npz"), tmp_path / "three.npz"
    p = _mpiexec(2, [sys.executable, script, ck3, str(out3), "2", "9"], timeout=60)
    p = _mpiexec(3, [sys.executable, script, ck3, str(out3), "2"])
    assert p.returncode == 0, p.stderr[-3000:]
    c = np.load(out3)
    for k in a.files:
        assert _rel(c[k], a[k]) < 1e-10, k
