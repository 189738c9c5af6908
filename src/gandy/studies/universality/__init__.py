"""The kernel-universality study: how the empirical NTK of random finite networks approaches the
analytic two numbers (g1, g2) as width and latent dimension grow (experiment.py, model.py)."""
