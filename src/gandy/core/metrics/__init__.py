"""Metrics: order parameters of the particle cloud (``order``), divergences (``divergences``), phase
labels (``phases``), convergence and boundaries. Import the module you need; this package imports
none of them itself (``phases`` is read by the CLI without loading torch)."""
