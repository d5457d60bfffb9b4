"""Under mpiexec: every fit of golden_cases.MPI_FITS with distributed=True; rank 0 writes
OUT.npz (strings and None stored as text arrays, read back by golden_cases._mpi_case).

usage: mpiexec -n P python mpi_fit.py OUT.npz
"""

import sys

import numpy as np
from golden_cases import mpi_fits
from mpi4py import MPI


def main(out):
    arrays = {}
    for k, v in mpi_fits(distributed=True).items():
        arrays[k] = np.array("__none__" if v is None else v)
    comm = MPI.COMM_WORLD
    arrays["size"] = np.array(comm.Get_size())
    if comm.Get_rank() == 0:
        np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
