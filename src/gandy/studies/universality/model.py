"""Kernel universality: the analytic two numbers (g1, g2) of an FC network's NTK and how the
empirical NTK of random finite networks scatters around them (docs/model.md, "The two-number kernel").

At N latents z_i uniform on S^{d_z - 1}, the empirical kernel K_ij of a network in the NTK
parameterisation (:class:`gandy.core.kernels.NtkMlp`, output-averaged by :func:`gandy.core.kernels.empirical_ntk`)
tends, as width -> infinity, to Theta(z_i . z_j); as d_z also grows, z_i . z_j -> 0 for i != j and
K -> (g1 - g2) I + g2 J with g1 = Theta(1), g2 = Theta(0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gandy.core.kernels import NtkMlp, empirical_ntk, ntk_analytic, ntk_g1_g2, sphere_latents
from gandy.runs.config import ConfigError

ACTIVATIONS = ("relu", "erf")


def check(depth: int, activation: str, weight_var: float, bias_var: float, width=None, latent_dim: int = 2,
          samples: int = 2, networks: int = 1) -> None:
    """Every argument in range, else a ConfigError naming its command-line option."""
    rules = (("--depth", depth, depth >= 1, "must be at least 1"),
             ("--activation", activation, activation in ACTIVATIONS, f"must be one of {', '.join(ACTIVATIONS)}"),
             ("--weight-var", weight_var, math.isfinite(weight_var) and weight_var > 0, "must be a finite number > 0"),
             ("--bias-var", bias_var, math.isfinite(bias_var) and bias_var >= 0, "must be a finite number >= 0"),
             ("--width", width, width is None or width >= 1, "must be at least 1"),
             ("--latent-dim", latent_dim, latent_dim >= 2, "must be at least 2"),
             ("--samples", samples, samples >= 2, "must be at least 2 (off-diagonal entries need two latents)"),
             ("--networks", networks, networks >= 1, "must be at least 1"))
    for name, value, ok, msg in rules:
        if not ok:
            raise ConfigError(name, f"{msg}, got {value!r}")


def analytic(depth: int, activation: str = "relu", weight_var: float = 2.0, bias_var: float = 0.0) -> dict:
    """``{"g1", "g2", "ratio"}`` of the infinite-width NTK (ratio = g2 / g1)."""
    check(depth, activation, weight_var, bias_var)
    g1, g2 = ntk_g1_g2(depth, activation, weight_var, bias_var)
    return {"g1": g1, "g2": g2, "ratio": g2 / g1}


def empirical_stats(depth: int, activation: str, weight_var: float, bias_var: float, width: int,
                    latent_dim: int = 100, samples: int = 32, networks: int = 4, seed: int = 0) -> dict:
    """Statistics of the empirical NTK of ``networks`` random networks (:class:`NtkMlp`, one output),
    each at its own ``samples`` latents ``z: (samples, latent_dim)`` on S^{latent_dim - 1}.

    Per network the kernel is ``K: (samples, samples)``; entries are pooled over networks:
    ``diag_mean``, ``diag_std`` (``networks * samples`` diagonal entries, next to g1) and
    ``offdiag_mean``, ``offdiag_std`` (``networks * samples * (samples - 1)`` off-diagonal entries,
    next to g2). ``offdiag_mean_limit`` and ``offdiag_std_limit`` are the mean and std of the
    infinite-width kernel Theta(z_i . z_j) over the same off-diagonal pairs: what finite d_z leaves
    however wide the network (z_i . z_j ~ d_z^{-1/2}, not 0; the diagonal has no such part,
    Theta(1) = g1 exactly). ``diag_mean_per_network``, ``offdiag_mean_per_network`` and
    ``offdiag_mean_limit_per_network``: lists of length ``networks``, each network's own means.
    ``rel_distance`` is the relative Frobenius distance of K from the
    two-number kernel, ``|K - (g1 - g2) I - g2 J|_F / |(g1 - g2) I + g2 J|_F`` (mean over networks).
    Network k and its latents are drawn from ``seed * 100003 + k``; the computation is in float64.
    Memory: the Jacobian holds ``samples * (number of parameters)`` floats, ~ samples * depth * width^2.
    """
    check(depth, activation, weight_var, bias_var, width, latent_dim, samples, networks)
    g1, g2 = ntk_g1_g2(depth, activation, weight_var, bias_var)
    two = (g1 - g2) * torch.eye(samples, dtype=torch.float64) + g2 * torch.ones(samples, samples, dtype=torch.float64)
    diag, off, lim, dist = [], [], [], []
    mask = ~torch.eye(samples, dtype=torch.bool)
    for k in range(networks):
        net = NtkMlp(latent_dim, width, depth, 1, activation, weight_var, bias_var,
                     generator=torch.Generator().manual_seed(seed * 100_003 + k), dtype=torch.float64)
        z = sphere_latents(samples, latent_dim, seed * 100_003 + k)
        kern = empirical_ntk(net, z).detach()
        diag.append(kern.diagonal())
        off.append(kern[mask])
        lim.append(ntk_analytic((z @ z.T)[mask], depth, activation, weight_var, bias_var))
        dist.append(float(torch.linalg.norm(kern - two) / torch.linalg.norm(two)))
    d, o = torch.cat(diag), torch.cat(off)
    return {"width": width, "latent_dim": latent_dim, "samples": samples, "networks": networks, "seed": seed,
            "diag_mean": float(d.mean()), "diag_std": float(d.std()), "offdiag_mean": float(o.mean()),
            "offdiag_std": float(o.std()), "offdiag_mean_limit": float(torch.cat(lim).mean()),
            "offdiag_std_limit": float(torch.cat(lim).std()),
            "rel_distance": float(np.mean(dist)),
            "diag_mean_per_network": [float(x.mean()) for x in diag],
            "offdiag_mean_per_network": [float(x.mean()) for x in off],
            "offdiag_mean_limit_per_network": [float(x.mean()) for x in lim]}


empirical = empirical_stats  # the name `gandy ntk` and the first tests used
