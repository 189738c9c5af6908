"""``engine: closed_form``: the critic's gradients and the particles' force written out by hand for
a one-hidden-layer MLP critic, f(x) = a . s(x W + b) + c, with no penalty or a squared-gradient
penalty (sobolev, r1, r2 on the logit). Same interface as :class:`gandy.core.compiled.CompiledStep`.

Why: autograd's double backward through the penalty makes ~1.2x the matrix products the maths needs
(a second forward of the penalised points, products of zero ReLU second derivatives) and several
passes over every (B, n, H) and (B, d, H) intermediate; in 784-D the products dominate. Here one
member's step costs the minimum, 2 d H (2 M + 7 N) multiply-adds for M data and N particles: two
forwards, the penalty's G = U W^T and G W, one product for dL/dW over all points stacked, and the
force's forward and backward. Per member, with u_i = a * s'(z_i) (H,), g_i = W u_i = grad_x f(x_i)::

    game:     e_j = dL_game/df_j (autograd on the (B, M) logits only: any game),
              dL/dW = sum_j x_j (e_j u_j)^T,  dL/db = sum_j e_j u_j,  dL/da = sum_j e_j s(z_j),  dL/dc = sum_j e_j
    penalty:  P = k/n sum_i |g_i|^2, q = 2 k lambda / n (k / n^2 for penalty.reduce: batch_mean):
              dP/dW = q sum_i [g_i u_i^T + x_i r_i^T],  r_i = (W^T g_i) * a * s''(z_i)   (0 for ReLU)
              dP/db = q sum_i r_i,  dP/da = q sum_i (W^T g_i) * s'(z_i)
    force:    grad_x l_G(f(x_i)) = l_G'(f_i) g_i

Numbers equal autograd's to rounding (tests/test_engines.py checks gradients in float64 for every
activation, penalty and game, and whole runs against the eager engine).
"""

from __future__ import annotations

import torch
from torch.func import grad

from gandy.core.errors import ConfigError
from gandy.core.nets.base import ACTIVATION_DERIVATIVES, ACTIVATIONS, bmv
from gandy.core.nets.mlp import Mlp
from gandy.core.objectives import SQUARED_GRADIENT


def unsupported(sim) -> str | None:
    """Why the closed form cannot run ``sim`` (None: it can)."""
    critic = sim.critic
    if type(critic) is not Mlp or len(critic.dims) != 3:
        return "the closed form needs an MLP critic with one hidden layer (critic.widths of length 1)"
    pen = sim.penalty_spec
    if "closed_form" not in sim.penalty.engines:
        return f"the closed form supports penalties none, {', '.join(SQUARED_GRADIENT)}; {pen.name} is not"
    if pen.name != "none" and pen.on != "logit":
        return "the closed form differentiates penalties on the logit (penalty.on: logit)"
    if critic.dropout > 0:
        return "the closed form has no dropout (critic.dropout)"
    return None


def _logit_derivative(fn, *fs: torch.Tensor) -> tuple:
    """d(sum of fn(*fs))/d f for each ``(B, M)`` tensor of logits: torch.func on the logits alone
    where compiling (so that the closed form also compiles), autograd otherwise (the same
    derivative; torch.func's transforms cost ~0.3 ms a call in eager, a lone 1-D member's step)."""
    if torch.compiler.is_compiling():
        return grad(lambda *leaves: fn(*leaves).sum(), argnums=tuple(range(len(fs))))(*fs)
    with torch.enable_grad():
        leaves = [f.detach().requires_grad_(True) for f in fs]
        return torch.autograd.grad(fn(*leaves).sum(), leaves, allow_unused=True, materialize_grads=True)


class ClosedForm:
    """Hand-derived gradients for a one-hidden-layer MLP critic; see the module docstring."""

    name = "closed_form"
    fuse = False
    """The optimiser step stays eager (nothing to compile)."""

    def __init__(self, sim):
        why = unsupported(sim)
        if why:
            raise ConfigError("engine", f"{why}; run it with engine: eager or compiled")
        self.sim = sim
        act = sim.critic.activation
        self.act = ACTIVATIONS[act]
        self.d1, self.d2 = ACTIVATION_DERIVATIVES[act]
        pen = sim.penalty_spec
        self.side, self.coef = SQUARED_GRADIENT[pen.name] if pen.name != "none" else (None, 0.0)
        self.batch_mean = pen.reduce == "batch_mean"

    def _forward(self, params: dict, x: torch.Tensor):
        """Pre-activations ``z: (B, n, H)``, activations ``h`` and logits ``f: (B, n)``."""
        z = torch.baddbmm(params["b0"][:, None, :], x, params["w0"])
        h = self.act(z)
        return z, h, bmv(h, params["w1"][..., 0]) + params["b1"]

    def critic_grads(self, params: dict, trainable: list, real: torch.Tensor, fake: torch.Tensor,
                     weight: torch.Tensor, masks: tuple = (None, None)) -> list:
        """d(critic loss)/d(trainable parameters) of every member, in the order of ``trainable``;
        ``real: (B, M, d)``, ``fake: (B, N, d)``, ``weight: (B,)`` the penalty weights; ``masks``
        always None (the closed form refuses dropout)."""
        w, a = params["w0"], params["w1"][..., 0]  # (B, d, H), (B, H)
        z_f, h_f, f_f = self._forward(params, fake)
        z_r, h_r, f_r = self._forward(params, real)
        e_r, e_f = _logit_derivative(self.sim.game.critic_loss, f_r, f_f)
        s_f, s_r = self.d1(z_f), self.d1(z_r)
        u_f, u_r = a[:, None, :] * s_f, a[:, None, :] * s_r  # u_i = a * s'(z_i): grad_x f(x_i) = W u_i
        d_f, d_r = e_f[..., None] * u_f, e_r[..., None] * u_r  # dL/dz: (B, N, H), (B, M, H)
        db = d_f.sum(1) + d_r.sum(1)
        da = (h_f * e_f[..., None]).sum(1) + (h_r * e_r[..., None]).sum(1)
        rows, cols = [fake, real], [d_f, d_r]
        if self.side is not None:
            i = 0 if self.side == "fake" else 1  # the penalised points' row block
            x_s, z_s, s_s, u = (fake, z_f, s_f, u_f) if i == 0 else (real, z_r, s_r, u_r)
            n = x_s.shape[1]
            coef = self.coef / n**2 if self.batch_mean else self.coef  # reduce: batch_mean squares grad/n
            q = (2 * coef / n) * weight[:, None, None]  # (B, 1, 1)
            g = torch.bmm(u, w.transpose(1, 2))  # grad_x f at the penalised points, (B, n, d)
            wg = torch.bmm(g, w)  # W^T g_i, (B, n, H)
            rows.append(g)
            cols.append(q * u)
            da = da + (q * wg * s_s).sum(1)
            if self.d2 is not None:
                r = q * wg * a[:, None, :] * self.d2(z_s)
                cols[i] = cols[i] + r
                db = db + r.sum(1)
        dw = torch.bmm(torch.cat(rows, 1).transpose(1, 2), torch.cat(cols, 1))
        grads = {"w0": dw, "b0": db, "w1": da[..., None], "b1": (e_f.sum(1) + e_r.sum(1))[:, None]}
        return [grads[k] for k in trainable]

    def loss_grad(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """grad_x l_G(f(x)) per particle, ``(B, N, d)``."""
        z, _, f = self._forward(params, x)
        (lg,) = _logit_derivative(self.sim.game.gen_loss, f)
        u = (lg[..., None] * params["w1"][..., 0][:, None, :]) * self.d1(z)
        return torch.bmm(u, params["w0"].transpose(1, 2))
