"""The mnist_collapse study (see experiment.py): mnist-collapse: the mode-collapse phase diagram of the effective model in 784-D."""
