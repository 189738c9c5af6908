"""penalties: when do gradient penalties help the non-saturating game (docs/lab.md)."""
