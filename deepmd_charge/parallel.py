"""Prediction split over MPI ranks (mpiexec -n N dp-charge predict ...).

Slabs of z-planes are dealt round-robin to the ranks; rank 0 receives them in order and writes the
file, so the output is the same as a serial run whatever the number of ranks, and no rank holds
the whole grid.
"""

from __future__ import annotations

import os

import numpy as np

_MPI_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_RANK", "SLURM_STEP_NUM_TASKS")


def mpi_comm():
    """COMM_WORLD when started by mpiexec with more than one rank, else None.

    mpi4py is imported only under a launcher, so serial runs never initialise MPI.
    """
    if not any(var in os.environ for var in _MPI_ENV):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def slabs_in_order(dc, atoms, shape, comm, progress=False, slab_points=None):
    """On rank 0: every (k0, k1, slab) of the grid in order. Other ranks compute and send theirs."""
    from deepmd_charge.predict import SLAB_POINTS, slab_bounds

    size, rank = comm.Get_size(), comm.Get_rank()
    if slab_points is None:  # at least ~4 slabs per rank for balance, at most SLAB_POINTS each
        slab_points = min(SLAB_POINTS, max(1, int(np.prod(shape)) // (4 * size)))
    bounds = slab_bounds(shape, slab_points)
    mine = {n for n in range(len(bounds)) if n % size == rank}
    local = dc.iter_slabs(atoms, shape, slab_points=slab_points, progress=progress and rank == 0, slabs=mine)
    if rank == 0:
        for n in range(len(bounds)):
            yield next(local) if n % size == 0 else comm.recv(source=n % size, tag=n)
    else:
        for n, item in zip(sorted(mine), local):
            comm.send(item, dest=0, tag=n)
