"""The collapse_1d study (see experiment.py): collapse-1d: mode-collapse phase diagrams in (g2/g1, critic learning rate) for two critics."""
