"""Synchronous data-parallel mini-batch gradient descent over MPI (mpi4py).

Launch as MPI programs are launched, ``mpiexec -n P python script.py`` or
``mpiexec -n P deepgrad train ... --distributed``; every rank runs the same code.

One step with P ranks and a global mini-batch of n examples (the batch single-process
training would use: same ``data.batch_indices(m, b, seed, epoch)``)::

    rank r takes rows idx[r n // P : (r + 1) n // P] of the sorted global batch idx
    local   s_r = sum_{i in rows of r} dL_i/dtheta,  l_r = sum_{i in rows of r} L_i
    buffer  [s_r (all parameters packed, "W1", "b1", ...) | l_r]   one flat array
    Allreduce(SUM) of that one buffer, divided by n      -> (1/n) sum_i dL_i/dtheta, J_data
    dW += (lambda / m_reg) W                              (m_reg = n or m, as single-process)
    every rank applies the same optimizer update          -> identical params and state

So the result equals single-process training up to the order of the summation (the tests
check 1e-10 relative in float64, 1e-5 in float32, P = 1, 2, 3). A rank whose share of a
small batch is empty (n < P) contributes zeros. Dropout masks are drawn for the whole
global batch from the same generator on every rank and sliced, so they match too.

Data: each rank gathers only its rows of each batch, ``X[idx_local]``. With a
memory-mapped .npy file that is all it reads; because the batch indices are sorted, rank
r's rows lie mostly in the r-th 1/P of the file, so each machine's page cache holds about
1/P of the data set. In-memory arrays are held whole by every rank (use a .npy
directory to avoid P copies).

Consistency and failure: every epoch the ranks compare a CRC32 of their parameters and
optimizer state (one ``allgather`` of an int); a mismatch raises ReplicaMismatchError on
every rank. Divergence (NaN/inf) is seen identically by every rank, since cost and
gradients are global, so ``on_divergence`` behaves as single-process. Any other exception
on one rank (a bad row in its shard, a full disk, a bug) prints its traceback and calls
``MPI_Abort``, so the other ranks stop instead of waiting forever in the next Allreduce;
a rank that dies is handled by mpiexec, which kills the others.

Checkpoints (``fit(checkpoint=PATH)``, deepgrad.train.checkpoint): rank 0 alone reads the file
and broadcasts what it read, and alone writes it (every ``checkpoint_every`` steps and after
each verified epoch); a restart of all ranks resumes, mid-epoch too.

"Under an MPI launcher" means one of LAUNCHER_VARIABLES is set (mpiexec of MPICH/hydra
sets PMI_RANK, Open MPI OMPI_COMM_WORLD_SIZE, PMIx launchers and srun PMIX_RANK). Without
one we refuse rather than import ``mpi4py.MPI``, which would start a 1-rank MPI "singleton"
and silently train alone. ``mpiexec -n 1`` is a valid 1-rank run.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
import traceback
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from deepgrad.core.checks import check_int
from deepgrad.train.types import DivergenceError

__all__ = [
    "MPIUnavailableError",
    "ReplicaMismatchError",
    "LAUNCHER_VARIABLES",
    "launched_by_mpi",
    "unavailable_reason",
    "world",
    "rank",
    "shard_bounds",
    "state_checksum",
    "agree",
    "check_replicas",
    "abort_on_error",
    "abort_all",
    "local_mpiexec",
    "TIMEOUT_ENV",
    "collective_timeout",
    "wait_or_abort",
]

TIMEOUT_ENV = "DEEPGRAD_MPI_TIMEOUT"
_HEARTBEAT_TAG = 7707

LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


class MPIUnavailableError(ValueError):
    """distributed=True but mpi4py is missing or the process was not started by mpiexec."""


class ReplicaMismatchError(RuntimeError):
    """Parameters or optimizer state differ between ranks (they must stay identical)."""


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (see LAUNCHER_VARIABLES)."""
    return any(v in os.environ for v in LAUNCHER_VARIABLES)


def unavailable_reason() -> str | None:
    """Why distributed training cannot run here, in one line; None when it can."""
    try:
        import mpi4py  # noqa: F401  (importing mpi4py alone does not start MPI)
    except ImportError:
        return (
            "distributed training needs mpi4py and an MPI library: "
            "pip install 'deepgrad[mpi]' (mpi4py and mpich from PyPI)"
        )
    if not launched_by_mpi():
        return (
            "distributed training must be started by an MPI launcher, e.g. "
            "'mpiexec -n 4 deepgrad train ... --distributed' (none of "
            f"{', '.join(LAUNCHER_VARIABLES)} is set)"
        )
    return None


def world():
    """MPI.COMM_WORLD, or MPIUnavailableError saying why not."""
    reason = unavailable_reason()
    if reason is not None:
        raise MPIUnavailableError(reason)
    from mpi4py import MPI

    return MPI.COMM_WORLD


def rank() -> int:
    """This process's rank in COMM_WORLD; 0 when not started by an MPI launcher."""
    return world().Get_rank() if unavailable_reason() is None else 0


def shard_bounds(n: int, size: int, r: int) -> tuple[int, int]:
    """Rows [lo, hi) of an n-row global batch that rank r of ``size`` computes.

    Contiguous and balanced (sizes differ by at most 1); empty for some ranks when n < size.
    """
    return (r * n) // size, ((r + 1) * n) // size


def _leaves(obj):
    """Arrays and numbers inside nested dicts/tuples/lists (params, optimizer states)."""
    if isinstance(obj, dict):
        for k in sorted(obj):
            yield from _leaves(obj[k])
    elif isinstance(obj, tuple | list):
        for v in obj:
            yield from _leaves(v)
    elif isinstance(obj, np.ndarray | np.generic | int | float | bool):
        yield np.asarray(obj)


def state_checksum(params: dict, opt_state=None) -> int:
    """CRC32 of the bytes of every parameter and optimizer-state array/number."""
    crc = 0
    for leaf in _leaves((params, opt_state)):
        crc = zlib.crc32(np.ascontiguousarray(leaf).tobytes(), crc)
    return crc


def agree(comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on every rank of ``comm``; if it raises on any, all raise.

    The rank that failed re-raises its own exception; the others raise ValueError naming
    it. Without this, a rank that fails alone (a file missing on its machine, a corrupt
    shard) would exit while the others wait forever in their next collective call.
    """
    try:
        result, error = fn(*args, **kwargs), None
    except Exception as exc:  # reported to every rank, then re-raised
        result, error = None, exc
    errors = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(i, e) for i, e in enumerate(errors) if e is not None]
    if failed:
        i, e = failed[0]
        raise ValueError(f"rank {i} of {len(errors)} failed: {e.splitlines()[0]}")
    return result


@contextmanager
def abort_on_error(comm):
    """Turn an exception on one rank into MPI_Abort, so the others do not hang."""
    try:
        yield
    except (DivergenceError, ReplicaMismatchError):
        raise  # decided from global values: every rank raises it together
    except BaseException:
        if comm.Get_size() > 1:
            abort_all(
                comm,
                1,
                f"deepgrad: rank {comm.Get_rank()} of {comm.Get_size()} failed; "
                "aborting all ranks\n" + traceback.format_exc(),
            )
        raise


# A rank's stderr reaches the user through the launcher's pipes: this long for the last
# line to pass before MPI_Abort kills the launcher's side too (else it can be lost).
ABORT_PAUSE_S = 0.25


def abort_all(comm, code: int, message: str) -> None:
    """Write ``message`` to stderr and abort every rank with ``code``; never returns."""
    sys.stderr.write(message)
    sys.stderr.flush()
    time.sleep(ABORT_PAUSE_S)
    comm.Abort(code)
    os._exit(code)  # Abort does not return; should it, never go on alone


def collective_timeout() -> float | None:
    """Seconds a rank waits in a training collective before it declares a rank gone:
    the environment's DEEPGRAD_MPI_TIMEOUT (unset: wait forever, plain blocking calls)."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return value


def wait_or_abort(comm, request, what: str, timeout: float) -> None:
    """Wait for the non-blocking ``request``; after ``timeout`` seconds without it, name the
    ranks that do not answer a heartbeat within another ``timeout``, print one line and
    abort every rank (a stopped rank would otherwise hang the job forever)."""
    deadline, pause = time.monotonic() + timeout, 0.0
    while not request.Test():
        if time.monotonic() > deadline:
            silent = _silent_ranks(comm, timeout)
            abort_all(
                comm,
                2,
                f"deepgrad: rank {comm.Get_rank()} of {comm.Get_size()}: rank(s) "
                f"{', '.join(map(str, silent)) or 'unknown'} stopped answering (no {what} "
                f"in {timeout:g} s, {TIMEOUT_ENV}); aborting all ranks\n",
            )
        time.sleep(pause)
        pause = min(2 * pause + 1e-5, 1e-3)  # spin first: a step's wait is usually short


def _silent_ranks(comm, grace: float) -> list[int]:
    """The ranks that send no heartbeat within ``grace`` seconds (every waiting rank sends
    one to every other when its own wait times out)."""
    me, size = comm.Get_rank(), comm.Get_size()
    others = [r for r in range(size) if r != me]
    sends = [comm.isend(me, dest=r, tag=_HEARTBEAT_TAG) for r in others]
    recvs = {r: comm.irecv(source=r, tag=_HEARTBEAT_TAG) for r in others}
    deadline, heard = time.monotonic() + grace, set()
    while time.monotonic() < deadline and len(heard) < len(others):
        heard |= {r for r, req in recvs.items() if r not in heard and req.test()[0]}
        time.sleep(1e-3)
    del sends  # never waited for: the job is aborted next
    return [r for r in others if r not in heard]


def check_replicas(comm, params, state, epoch) -> None:
    """ReplicaMismatchError on every rank unless all hold the same parameters and state."""
    timeout = collective_timeout()
    if timeout is None:
        sums = comm.allgather(state_checksum(params, state))
    else:
        mine = np.array([state_checksum(params, state)], dtype=np.int64)
        every = np.empty(comm.Get_size(), dtype=np.int64)
        wait_or_abort(comm, comm.Iallgather(mine, every), "checksum", timeout)
        sums = [int(v) for v in every]
    if len(set(sums)) > 1:
        raise ReplicaMismatchError(
            f"parameters or optimizer state differ between ranks after epoch {epoch + 1} "
            f"(CRC32 by rank: {sums}); every rank must run the same deepgrad, optimizer "
            "and data"
        )


def local_mpiexec(n: int, argv: list[str], threads: int = 1) -> tuple[list[str], dict]:
    """(command, environment) that run ``argv`` as ``n`` ranks on this machine only.

    Uses the ``mpiexec`` beside the running Python (the ``mpich`` wheel puts MPICH's hydra
    there), else the one on PATH. Hydra starts the ranks with ``fork`` on localhost and
    allows more ranks than cores; ``UCX_TLS=self,sm`` keeps MPICH's messages in shared
    memory, and ``threads`` BLAS threads per rank keep P ranks from fighting over cores.
    """
    n = check_int("n", n, 1)
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.is_file() else shutil.which("mpiexec")
    if exe is None:
        raise MPIUnavailableError("no mpiexec found beside Python or on PATH")
    env = dict(os.environ)
    for v in LAUNCHER_VARIABLES:  # a launcher inside a launcher would get confused
        env.pop(v, None)
    t = str(threads)
    env.update(OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t, UCX_TLS="self,sm")
    return [exe, "-launcher", "fork", "-hosts", "localhost", "-n", str(n), *argv], env
