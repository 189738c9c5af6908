"""gandy's numerical core: targets, kernels, networks, games, optimisers, the step and the metrics,
as functions of batched tensors ``(B, ...)``. It imports nothing from config parsing, run files,
figures or the studies (docs/architecture.md)."""
