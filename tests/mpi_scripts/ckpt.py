"""Under mpiexec: distributed training with fit(checkpoint=PATH); rank 0 writes OUT.npz.

usage: mpiexec -n P python ckpt.py CHECKPOINT OUT.npz EPOCHS [DIE_AT]
With DIE_AT, rank 0 exits abruptly after that iteration (counted over the whole fit, from
0), as a crashed machine would; mpiexec then stops the other ranks. Running the same
command without DIE_AT resumes from the checkpoint (saved every 2 iterations).
"""

import os
import sys

import numpy as np
from cases import make_data, momentum

import deepgrad as dg
from deepgrad.train import distributed
from deepgrad.train.mpi import fit_distributed


def main(path, out, epochs, die_at=None):
    X, _, y3 = make_data()

    def die(info):
        if die_at is not None and info.iteration == die_at:
            os._exit(5)

    net = dg.Network([5, 7, 4, 3], "tanh", "softmax", seed=3, dtype="float64")
    hist = fit_distributed(
        net, X, y3, batch_size=7, epochs=epochs, learning_rate=0.3, l2=0.1, keep_prob=0.8,
        optimizer=momentum(), seed=11, callbacks=[die], progress=False,
        checkpoint=path, checkpoint_every=2,
    )  # fmt: skip
    if distributed.rank() == 0:
        np.savez(out, iteration_cost=hist.iteration_cost, epoch_cost=hist.epoch_cost, **net.params)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:]))
