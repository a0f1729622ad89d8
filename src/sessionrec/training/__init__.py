"""Training infrastructure shared by models: session-parallel batches, negative sampling,
losses, optimisers, and the epoch loop with its checkpoints (``trainer``).

The runner behind `sessionrec train` and ``sr.train`` is ``sessionrec.runner``: it creates
models from the registry, so it sits above them, while this package sits below them.
"""
