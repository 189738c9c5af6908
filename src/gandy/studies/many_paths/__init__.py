"""The many_paths study (see experiment.py): many-paths: every game of Fedus et al. (2018) on real generators, with divergences tracked."""
