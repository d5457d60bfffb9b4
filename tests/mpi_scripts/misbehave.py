"""Under mpiexec: one rank misbehaves during distributed training.

usage: mpiexec -n P python misbehave.py MODE
MODE raise: rank 1 raises at its 3rd update (the others must be aborted, not hang);
     die: rank 1 exits abruptly (os._exit) at its 3rd update;
     drift: rank 1 nudges its parameters, which the per-epoch checksum must catch;
     stop: rank 1 SIGSTOPs itself at its 3rd update, with DEEPGRAD_MPI_TIMEOUT=2: the
     others must name it and abort instead of waiting forever;
     diverge: a huge learning rate with on_divergence="stop": every rank stops at the
     same step and says so.
"""

import json
import os
import signal
import sys

from cases import make_data, run_case

import deepgrad as dg
from deepgrad.train import distributed


def main(mode):
    r = distributed.rank()

    def hook(count, params):
        if r != 1 or count != 2:
            return
        if mode == "raise":
            raise RuntimeError("rank 1 fails on purpose")
        if mode == "die":
            os._exit(3)
        if mode == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        if mode == "drift":
            params["b1"][0] += 1e-3

    if mode == "stop":
        os.environ["DEEPGRAD_MPI_TIMEOUT"] = "2"
    X, y2, y3 = make_data()
    if mode == "diverge":
        net = dg.Network([5, 7, 4, 1], "linear", "linear", seed=3, dtype="float64")
        h = net.fit(X, X[:, 0] * 10, batch_size=7, epochs=3, learning_rate=1.0, seed=1,
                    on_divergence="stop", distributed=True)  # fmt: skip
        # one line from rank 0 (lines printed by several ranks may interleave)
        stopped = distributed.world().gather(h.stopped, root=0)
        if r == 0:
            print(json.dumps(stopped), flush=True)
        return
    try:
        run_case("f64_momentum_dropout_softmax", X, y2, y3, distributed=True, hook=hook)
    except distributed.ReplicaMismatchError as exc:  # raised on every rank together
        if r == 0:  # one message (lines written by several ranks may interleave)
            print(f"caught on all ranks: {exc}", flush=True)
        sys.exit(1)
    print(f"rank {r} finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
