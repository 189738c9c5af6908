"""The robustness study (see experiment.py): robustness: how robust each game is across random hyperparameter draws on Color MNIST."""
