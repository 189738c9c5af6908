"""From networks to particles: a real generator against the effective model, side by side.

One seed runs three members in one batch, with identical critic initialisation and identical data
and penalty draws (the same member key), all starting from the same points X0 = G(z; theta0) of an
MLP generator G in the NTK parameterisation (:class:`gandy.core.kernels.NtkMlp`) at N fixed latents z
on the sphere S^{d_z - 1}:

* ``network``: the generator itself. Each step its parameters take one plain gradient step that
  moves its outputs along the critic's force, theta <- theta + eta sum_j J_j^T F_j (J_j = dG(z_j)/dtheta),
  so that to first order X <- X + eta Theta F with Theta its current NTK;
* ``empirical_ntk``: particles X <- X + eta K F with K the generator's empirical NTK at initialisation
  (the linearised, "lazy" network);
* ``two_number``: particles X <- X + eta K F with K = (g1 - g2) I + g2 J from the analytic g1, g2
  (docs/model.md): the effective model proper.

The critic, objective, penalty and step sizes are those of the config; the three members differ
only in how the generator moves. The discrepancy of a particle side from the network is the mean
distance between corresponding points, mean_i |X_i - G(z_i)|, logged with the order parameters.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch

from gandy.core.kernels import Dense, NtkMlp, TwoNumber, empirical_ntk, ntk_g1_g2, sphere_latents
from gandy.core.metrics.order import ORDER_PARAMETERS, order_parameters
from gandy.core.rng import Stream, member_keys
from gandy.core.step import Particles, Sides, TorchNetwork, start
from gandy.runs import config as C
from gandy.runs.build import build
from gandy.runs.loop import drive

SIDES = ("network", "empirical_ntk", "two_number")


def run_bridge(cfg: C.Config, width: int, depth: int = 2, latent_dim: int = 256, activation: str = "relu",
               weight_var: float = 2.0, bias_var: float = 0.0, seeds: Optional[list[int]] = None) -> pd.DataFrame:
    """Run the three sides for every seed; one row per (seed, step, side) with ``discrepancy`` (to
    the network) and the order parameters. ``cfg`` is a particle config (its kernel is ignored;
    ``optim.generator.lr`` is eta; ``particles.n`` the number of latents)."""
    if cfg.generator is not None:
        raise C.ConfigError("generator", "the bridge drives the particles itself: leave generator empty")
    sim = build(cfg)
    n, d = sim.n, sim.d
    g1, g2 = ntk_g1_g2(depth, activation, weight_var, bias_var)
    rows = []
    for seed in seeds if seeds is not None else cfg.seeds:
        gen = torch.Generator().manual_seed(int(seed))
        net = NtkMlp(latent_dim, width, depth, d, activation, weight_var, bias_var, generator=gen)
        z = sphere_latents(n, latent_dim, int(seed)).float()
        kernels = [Dense(empirical_ntk(net, z).detach().float(), "bridge"), TwoNumber(n, g1, g2)]
        st = start(sim, [int(seed)] * 3)  # one member key: identical critics, data and penalty draws
        with torch.no_grad():
            st.x = net(z).detach().expand(3, n, d).clone().to(sim.device)
            st.x0 = st.x.clone()
        sides = Sides([TorchNetwork(net, z), *(Particles(k) for k in kernels)])
        # a side that blew up ends the seed; its last step is logged once, as non-finite
        drive(sim, st, cfg.steps, [(cfg.log_every, lambda t: rows.extend(_log(sim, st, seed, t)))],
              stop=lambda t: not bool(st.alive.all()), mover=sides)
    return pd.DataFrame(rows)


def _log(sim, st, seed: int, t: int) -> list[dict]:
    """Rows of the three sides at step ``t``: discrepancy to the network and order parameters (NaN
    for a side that blew up)."""
    x = torch.where(st.alive[:, None, None], st.x, torch.nan)
    ref = sim.target.sample(_stream(seed), min(sim.n, 1024)).expand(3, -1, -1)
    op = order_parameters(x, sim.target, ref, sim.loop.max_points, st.x0)
    gap = (x - x[:1]).norm(dim=-1).mean(-1).cpu().numpy()
    return [{"seed": int(seed), "step": t, "side": side, "discrepancy": float(gap[i]),
             **{k: float(op[k][i]) for k in ORDER_PARAMETERS}} for i, side in enumerate(SIDES)]


def _stream(seed: int):
    return Stream(member_keys([int(seed)]), "bridge-reference")


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per width and particle side: the discrepancy at the last step and averaged over time, and
    the final coverage_kl and w1 gaps to the network, as means over the seeds whose three sides
    stayed finite; ``blew_up`` counts the seeds left out (never averaged in)."""
    bad = set(table.loc[~np.isfinite(table.discrepancy.astype(float)), "seed"].unique())
    blown = {w: {s for s in bad if (~np.isfinite(table[(table.width == w) & (table.seed == s)].discrepancy)).any()}
             for w in table.width.unique()}
    rows = []
    for (w, side), t in table[table.side != "network"].groupby(["width", "side"]):
        ok = t[~t.seed.isin(blown[w])]
        last_step = ok.groupby("seed").step.transform("max")
        fin = ok[ok.step == last_step].set_index("seed")
        net = table[(table.width == w) & (table.side == "network") & ~table.seed.isin(blown[w])]
        net = net[net.step == net.groupby("seed").step.transform("max")].set_index("seed")
        rows.append({"width": int(w), "side": side, "final_discrepancy": float(fin.discrepancy.mean()),
                     "mean_discrepancy": float(ok.discrepancy.mean()),
                     "final_coverage_kl_gap": float((fin.coverage_kl - net.coverage_kl).abs().mean()),
                     "final_w1_gap": float((fin.w1 - net.w1).abs().mean()), "blew_up": len(blown[w])})
    return pd.DataFrame(rows)


__all__ = ["run_bridge", "summarise", "SIDES"]
