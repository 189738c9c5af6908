"""The robustness_2d study (see experiment.py): robustness-2d: how robust each game is across random hyperparameter draws on the 2-D lab targets ring8 and grid25."""
