"""gandy's numerical core: the pieces every run is built from, as pure functions of tensors.

The core imports nothing from config parsing, files or plots (docs/architecture.md). It is being
assembled from the flat modules one piece at a time (issue 14): so far ``errors`` and
``nets.base``.
"""
