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

Deeper critics, and dropout, with a piecewise-linear activation (relu, leaky_relu: s'' = 0 almost
everywhere), layers l = 0..L-1, f(x) = a . h_L + c, h_(l+1) = s(h_l W_l + b_l) (times the dropout
mask m at ``drop_layer``), D_l = s'(z_l) (times m there), all points of both sides stacked into one
batch of rows (one product per layer, not two)::

    backward: delta_(L-1) = a * D_(L-1),  delta_(l-1) = (delta_l W_l^T) * D_(l-1)   (= df/dz_l)
              g_i = W_0 delta_0,i = grad_x f(x_i)  (the penalised side's rows only)
    tangent:  t_0 = q g_i,  t_(l+1) = (t_l W_l) * D_l   (P's derivative carried forward, no biases)
    weights:  dL/dW_l = sum_j (e_j h_l,j + t_l,j)^T delta_l,j   (t only on the penalised rows; h_0 = x)
              dL/db_l = sum_j e_j delta_l,j,  dL/da = sum_j (e_j h_L,j + t_L,j),  dL/dc = sum_j e_j

as autograd's double backward would compute it, without its products of zero second derivatives,
its second forward of the penalised points or separate products for the game's and the penalty's
share of dL/dW: per member and critic step, with W = sum_l |W_l| weights and n = M + N rows,
n W (forward) + n W (backward, less the input layer's for the unpenalised side) + N W (tangent) +
n W (dL/dW) multiply-adds. At the mnist-collapse critic (784 -> 64 -> 1024 -> 64 -> 1, M = N =
100) that is 1.22e8 per critic step, against 1.58e8 for a hand-written autograd loop and 2.0e8 for
gandy's eager engine (torch.utils.flop_counter; benchmarks/mnist_step.py).

Numbers equal autograd's to rounding (tests/test_engines.py checks gradients in float64 for every
activation, penalty and game, deep critics and dropout masks included, and whole runs against the
eager engine).
"""

from __future__ import annotations

import torch
from torch.func import grad

from gandy.core.errors import ConfigError
from gandy.core.nets.base import ACTIVATION_DERIVATIVES, ACTIVATIONS, bmv
from gandy.core.nets.mlp import Mlp
from gandy.core.objectives import SQUARED_GRADIENT


def piecewise_linear(activation: str) -> bool:
    """Whether the activation's second derivative vanishes almost everywhere (relu, leaky_relu):
    the closed form then runs critics of any depth, with dropout."""
    return ACTIVATION_DERIVATIVES[activation][1] is None


def unsupported(sim) -> str | None:
    """Why the closed form cannot run ``sim`` (None: it can)."""
    critic = sim.critic
    if type(critic) is not Mlp or not critic.scalar:
        return "the closed form needs an MLP critic"
    linear = piecewise_linear(critic.activation)
    if len(critic.dims) != 3 and not linear:
        return ("the closed form needs an MLP critic with one hidden layer (critic.widths of length 1), or a "
                "piecewise-linear activation (relu, leaky_relu) for deeper ones")
    pen = sim.penalty_spec
    if "closed_form" not in sim.penalty.engines:
        return f"the closed form supports penalties none, {', '.join(SQUARED_GRADIENT)}; {pen.name} is not"
    if pen.name != "none" and pen.on != "logit":
        return "the closed form differentiates penalties on the logit (penalty.on: logit)"
    if critic.dropout > 0 and not linear:
        return "the closed form runs dropout (critic.dropout) with a piecewise-linear activation only (relu, leaky_relu)"
    return None


def _logit_derivative(fn, by_hand, *fs: torch.Tensor) -> tuple:
    """d(sum of fn(*fs))/d f for each ``(B, M)`` tensor of logits: the game's derivative by hand
    (``by_hand``, :class:`gandy.core.objectives.Game`'s ``critic_dloss``/``gen_dloss``) where it has
    one; else torch.func on the logits alone where compiling (so that the closed form also
    compiles), autograd otherwise (the same derivative; torch.func's transforms cost ~0.3 ms a
    call in eager, autograd ~0.25: a lone member's step is a few ms)."""
    if by_hand is not None:
        out = by_hand(*fs)
        return out if isinstance(out, tuple) else (out,)
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
        critic = sim.critic
        self.deep = len(critic.dims) != 3 or critic.dropout > 0
        """The layer-by-layer form for piecewise-linear critics (deeper than one hidden layer, or
        with dropout); the one-hidden-layer form otherwise (any activation)."""
        self.layers, self.drop_layer = len(critic.dims) - 1, critic.drop_layer
        self.low = sim.step.matmul == "bfloat16"
        """Every matrix product in bfloat16 (``matmul: bfloat16``; see :meth:`_bmm`)."""

    def _bmm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``torch.bmm(a, b)``; with ``matmul: bfloat16`` the inputs rounded to bfloat16, the
        product accumulated by the BLAS and rounded to bfloat16 once (as under torch.autocast),
        then carried on in ``a``'s dtype: the products run on the hardware's bfloat16 units
        (AVX-512 BF16, AMX, tensor cores)."""
        if self.low:
            return torch.bmm(a.bfloat16(), b.bfloat16()).to(a.dtype)
        return torch.bmm(a, b)

    def _baddbmm(self, c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``torch.baddbmm(c, a, b)`` (``c + a b``), in bfloat16 as :meth:`_bmm` where asked (the
        bias added in float32)."""
        if self.low:
            return c + self._bmm(a, b)
        return torch.baddbmm(c, a, b)

    def _forward(self, params: dict, x: torch.Tensor):
        """Pre-activations ``z: (B, n, H)``, activations ``h`` and logits ``f: (B, n)``."""
        z = self._baddbmm(params["b0"][:, None, :], x, params["w0"])
        h = self.act(z)
        return z, h, bmv(h, params["w1"][..., 0]) + params["b1"]

    def critic_grads(self, params: dict, trainable: list, real: torch.Tensor, fake: torch.Tensor,
                     weight: torch.Tensor, masks: tuple = (None, None)) -> list:
        """d(critic loss)/d(trainable parameters) of every member, in the order of ``trainable``;
        ``real: (B, M, d)``, ``fake: (B, N, d)``, ``weight: (B,)`` the penalty weights; ``masks``
        the dropout masks of the real and the generated points ``(B, M | N, width)`` (both None
        without dropout)."""
        if self.deep:
            return self._deep_grads(params, trainable, real, fake, weight, masks)
        w, a = params["w0"], params["w1"][..., 0]  # (B, d, H), (B, H)
        z_f, h_f, f_f = self._forward(params, fake)
        z_r, h_r, f_r = self._forward(params, real)
        e_r, e_f = _logit_derivative(self.sim.game.critic_loss, self.sim.game.critic_dloss, f_r, f_f)
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
            g = self._bmm(u, w.transpose(1, 2))  # grad_x f at the penalised points, (B, n, d)
            wg = self._bmm(g, w)  # W^T g_i, (B, n, H)
            rows.append(g)
            cols.append(q * u)
            da = da + (q * wg * s_s).sum(1)
            if self.d2 is not None:
                r = q * wg * a[:, None, :] * self.d2(z_s)
                cols[i] = cols[i] + r
                db = db + r.sum(1)
        dw = self._bmm(torch.cat(rows, 1).transpose(1, 2), torch.cat(cols, 1))
        grads = {"w0": dw, "b0": db, "w1": da[..., None], "b1": (e_f.sum(1) + e_r.sum(1))[:, None]}
        return [grads[k] for k in trainable]

    def _deep_forward(self, params: dict, x: torch.Tensor, mask):
        """Activations ``h_0 = x, h_1, ..., h_L`` (``(B, n, width)`` each, the mask applied),
        derivative patterns ``D_0 .. D_(L-1)`` (s'(z_l), times the mask at ``drop_layer``) and
        logits ``f: (B, n)`` of a piecewise-linear MLP."""
        hs, ds = [x], []
        h = x
        last = self.layers - 1
        for i in range(last):
            z = self._baddbmm(params[f"b{i}"][:, None, :], h, params[f"w{i}"])
            h, s = self.act(z), self.d1(z)
            if mask is not None and i == self.drop_layer:
                h, s = h * mask, s * mask
            hs.append(h)
            ds.append(s)
        return hs, ds, bmv(h, params[f"w{last}"][..., 0]) + params[f"b{last}"]

    def _deltas(self, params: dict, ds: list, top: torch.Tensor) -> list:
        """df/dz_l of every hidden layer l (pre-activations), ``(B, n, width_l)``, from ``top``: the
        output weights ``a`` (times dL/df per point where wanted), ``(B, 1 | n, width)``."""
        delta = top * ds[-1]
        out = [delta]
        for i in range(self.layers - 2, 0, -1):
            delta = self._bmm(delta, params[f"w{i}"].transpose(1, 2)) * ds[i - 1]
            out.append(delta)
        return out[::-1]

    def _deep_grads(self, params: dict, trainable: list, real: torch.Tensor, fake: torch.Tensor,
                    weight: torch.Tensor, masks: tuple) -> list:
        """:meth:`critic_grads` of a piecewise-linear MLP of any depth, dropout included (see the
        module docstring): the generated points' rows first, then the real ones'."""
        n_f, last = fake.shape[1], self.layers - 1
        x = torch.cat([fake, real], 1)
        mask = None if masks[1] is None else torch.cat([masks[1], masks[0]], 1).to(x.dtype)
        hs, ds, f = self._deep_forward(params, x, mask)
        e_r, e_f = _logit_derivative(self.sim.game.critic_loss, self.sim.game.critic_dloss, f[:, n_f:], f[:, :n_f])
        e = torch.cat([e_f, e_r], 1)[..., None]  # dL/df per row, (B, n, 1)
        deltas = self._deltas(params, ds, params[f"w{last}"][:, None, :, 0])
        ts = [None] * self.layers
        if self.side is not None:
            rows = slice(0, n_f) if self.side == "fake" else slice(n_f, None)
            n = n_f if self.side == "fake" else real.shape[1]
            coef = self.coef / n**2 if self.batch_mean else self.coef
            q = (2 * coef / n) * weight[:, None, None]  # (B, 1, 1)
            t = q * self._bmm(deltas[0][:, rows], params["w0"].transpose(1, 2))  # q g_i, (B, n, d)
            for i in range(self.layers):
                ts[i] = t
                if i < last:
                    t = self._bmm(t, params[f"w{i}"]) * ds[i][:, rows]
        grads = {}
        for i in range(self.layers):
            lhs = e * hs[i]  # (B, n, width_(i-1)): e_j h_i,j (+ t_i,j on the penalised rows)
            if ts[i] is not None:
                lhs[:, rows] += ts[i]
            if i < last:
                grads[f"w{i}"] = self._bmm(lhs.transpose(1, 2), deltas[i])
                grads[f"b{i}"] = (e * deltas[i]).sum(1)
            else:
                grads[f"w{i}"] = lhs.sum(1)[..., None]
                grads[f"b{i}"] = e.sum(1)
        return [grads[k] for k in trainable]

    def loss_grad(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """grad_x l_G(f(x)) per particle, ``(B, N, d)``."""
        if self.deep:
            _, ds, f = self._deep_forward(params, x, None)
            (lg,) = _logit_derivative(self.sim.game.gen_loss, self.sim.game.gen_dloss, f)
            top = lg[..., None] * params[f"w{self.layers - 1}"][:, None, :, 0]
            return self._bmm(self._deltas(params, ds, top)[0], params["w0"].transpose(1, 2))
        z, _, f = self._forward(params, x)
        (lg,) = _logit_derivative(self.sim.game.gen_loss, self.sim.game.gen_dloss, f)
        u = (lg[..., None] * params["w1"][..., 0][:, None, :]) * self.d1(z)
        return self._bmm(u, params["w0"].transpose(1, 2))
