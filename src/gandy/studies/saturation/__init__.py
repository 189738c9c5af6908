"""saturation: where the minimax generator gradient vanishes and the non-saturating one does not (docs/lab.md)."""
