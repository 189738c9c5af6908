"""The damping study: convergence against penalty weight for linear and MLP critics, beside the
linear theory of critical damping (experiment.py; model.py holds the theory and the scan)."""
