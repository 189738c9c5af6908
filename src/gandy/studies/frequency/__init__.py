"""The frequency study (see experiment.py): frequency: how fast each critic type learns functions of rising frequency."""
