"""Runs: configs, building a simulation, the loop, phases and tables, sweeps and their executors, the
Python API, and the store (the only reader and writer of run, sweep and damping directories)."""
