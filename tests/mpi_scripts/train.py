"""Under mpiexec: train every case of cases.py distributed; rank 0 writes OUT.npz.

usage: mpiexec -n P python train.py DATA_DIR OUT.npz [CASE ...]
DATA_DIR holds X.npy, y2.npy, y3.npy (X memory-mapped for the cases marked memmap).
"""

import sys
from pathlib import Path

import numpy as np
from cases import CASES, run_case

from deepgrad.train import distributed


def main(data_dir, out, names):
    d = Path(data_dir)
    X = np.load(d / "X.npy")
    Xmm = np.load(d / "X.npy", mmap_mode="r")
    y2, y3 = np.load(d / "y2.npy"), np.load(d / "y3.npy")
    arrays = {}
    for name in names or CASES:
        res = run_case(name, Xmm if CASES[name].get("memmap") else X, y2, y3, distributed=True)
        for k, v in res.params.items():
            arrays[f"{name}/{k}"] = v
        arrays[f"{name}/iteration_cost"] = np.array(res.iteration_cost)
        arrays[f"{name}/val_cost"] = np.array(res.val_cost)
    comm = distributed.world()
    arrays["size"] = np.array(comm.Get_size())
    if comm.Get_rank() == 0:
        np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
