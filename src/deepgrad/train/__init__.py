"""Training: one loop (``loop.fit``), many engines (``engines``).

Imports: deepgrad.data, optim, io, devices and core; never model, diagnostics or above.

- ``progress``: the progress bar; ``distributed``: MPI launch and collectives;
- ``types``: History, StepInfo, DivergenceError, the Plan every engine runs;
- ``arguments``: every check of fit's arguments;
- ``loop``: epochs, order, history, divergence, validation, checkpoints, callbacks;
- ``checkpoint``: the checkpoint file and resume;
- ``engines``: reference (any backend), numpy-shards (fast NumPy), ...;
- ``mpi``: the same loop on every rank of an MPI job, gradients all-reduced.
"""
