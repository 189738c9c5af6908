"""The demo study (see experiment.py): ``gandy demo``: the mode-collapse mechanism in one picture."""
