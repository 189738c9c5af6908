"""The mnist_calibrate study (see experiment.py): mnist-calibrate: the 784-D config scored against the authors' published clouds, and a search of the uncertain choices."""
