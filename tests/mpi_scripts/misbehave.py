"""Under mpiexec: one rank misbehaves during distributed training.

usage: mpiexec -n P python misbehave.py MODE
MODE raise: rank 1 raises at its 3rd update (the others must be aborted, not hang);
     die: rank 1 exits abruptly (os._exit) at its 3rd update;
     drift: rank 1 nudges its parameters, which the per-epoch checksum must catch.
"""

import os
import sys

from cases import make_data, momentum, run_case  # noqa: F401

from deepgrad import distributed


def main(mode):
    r = distributed.rank()

    def hook(count, params):
        if r != 1 or count != 2:
            return
        if mode == "raise":
            raise RuntimeError("rank 1 fails on purpose")
        if mode == "die":
            os._exit(3)
        if mode == "drift":
            params["b1"][0] += 1e-3

    X, y2, y3 = make_data()
    run_case("f64_momentum_dropout_softmax", X, y2, y3, distributed=True, hook=hook)
    print(f"rank {r} finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
