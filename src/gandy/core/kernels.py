"""Generator kernels K (N x N, identity across output dimensions): the particle update is
``X <- X + lr_G * K @ F`` with ``X, F: (B, N, d)``.

* ``two_number``: K = (g1 - g2) I + g2 J, applied in O(N d) without forming K.
* ``ntk``: the analytic infinite-width NTK of a fully connected network (ReLU or erf) at latents
  drawn uniformly on the unit sphere S^{d_z - 1}.
* ``empirical_ntk``: the NTK of a user-supplied torch module at fixed latents (torch.func),
  averaged over the output dimension (the kernel's trace part).
* ``matrix``: a user-supplied symmetric positive semi-definite matrix.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from gandy.core import plugins as plugins_
from gandy.core.errors import ConfigError
from gandy.core.targets import load_array


class Kernel:
    """``apply(F: (B, N, d)) -> (B, N, d)``; ``dense() -> (N, N)`` for inspection and tests."""

    n: int
    g1: Optional[float] = None
    g2: Optional[float] = None

    def apply(self, f: torch.Tensor, g1: Optional[torch.Tensor] = None, g2: Optional[torch.Tensor] = None) -> torch.Tensor:
        """K F for ``f: (B, N, d)``. ``g1, g2: (B,)`` per-member numbers where the kernel has them."""
        raise NotImplementedError

    def dense(self) -> torch.Tensor:
        raise NotImplementedError

    def info(self) -> dict:
        """Numbers worth recording beside a run (g1, g2, ratio where defined)."""
        out = {}
        if self.g1 is not None:
            out = {"g1": float(self.g1), "g2": float(self.g2), "ratio": float(self.g2 / self.g1)}
        return out


class TwoNumber(Kernel):
    """K = (g1 - g2) I_N + g2 J_N. Eigenvalues: g1 + (N-1) g2 (once), g1 - g2 (N-1 times)."""

    def __init__(self, n: int, g1: float, g2: float, device="cpu"):
        if g1 + (n - 1) * g2 < 0:
            raise ConfigError("kernel.g2", f"g1 + (N-1) g2 = {g1 + (n - 1) * g2:g} < 0: the kernel is not PSD")
        if g2 > g1:
            raise ConfigError("kernel.g2", f"g2 ({g2}) exceeds g1 ({g1}): eigenvalue g1 - g2 < 0, the kernel is not PSD")
        self.n, self.g1, self.g2 = n, g1, g2

    def apply(self, f, g1=None, g2=None):
        g1 = self.g1 if g1 is None else g1[:, None, None]
        g2 = self.g2 if g2 is None else g2[:, None, None]
        return (g1 - g2) * f + g2 * f.sum(dim=-2, keepdim=True)

    def dense(self):
        return (self.g1 - self.g2) * torch.eye(self.n) + self.g2 * torch.ones(self.n, self.n)

    def eigenvalues(self) -> torch.Tensor:
        """``(N,)``: the centre-of-mass eigenvalue first, then the N - 1 relative ones."""
        ev = torch.full((self.n,), self.g1 - self.g2, dtype=torch.float64)
        ev[0] = self.g1 + (self.n - 1) * self.g2
        return ev


class Dense(Kernel):
    """Any explicit PSD matrix ``k: (N, N)``."""

    def __init__(self, k: torch.Tensor, field: str = "kernel", g12: Optional[tuple] = None, check: bool = True):
        if check:
            check_psd(k, field)
        self.k = k.to(torch.float32)
        self.n = k.shape[0]
        if g12 is not None:
            self.g1, self.g2 = g12

    def apply(self, f, g1=None, g2=None):
        return torch.matmul(self.k.to(device=f.device, dtype=f.dtype), f)

    def dense(self):
        return self.k

    def info(self):
        out = super().info()
        off = self.k[~torch.eye(self.n, dtype=torch.bool, device=self.k.device)]
        out.update(diag_mean=float(self.k.diagonal().mean()), offdiag_mean=float(off.mean()) if off.numel() else 0.0)
        return out


def check_psd(k: torch.Tensor, field: str) -> None:
    """Raise ConfigError unless ``k`` is a finite, square, symmetric PSD matrix."""
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ConfigError(field, f"kernel matrix must be square, got shape {tuple(k.shape)}")
    if not bool(torch.isfinite(k).all()):
        raise ConfigError(field, "kernel matrix contains NaN or Inf")
    k64 = k.double()
    scale = float(k64.abs().max()) or 1.0
    if float((k64 - k64.T).abs().max()) > 1e-6 * scale:
        raise ConfigError(field, "kernel matrix is not symmetric")
    lam = float(torch.linalg.eigvalsh(0.5 * (k64 + k64.T)).min())
    if lam < -1e-6 * scale:
        raise ConfigError(field, f"kernel matrix is not positive semi-definite (smallest eigenvalue {lam:.3g})")


# ----------------------------------------------------------------------------- analytic NTK
def ntk_analytic(rho, depth: int, activation: str = "relu", weight_var: float = 2.0, bias_var: float = 0.0):
    """Analytic NTK Theta(rho) of an FC network with ``depth`` hidden layers, inputs on the unit sphere.

    ``rho``: array of cosines z_i . z_j (any shape, float64 recommended). NTK parameterisation:
    h^1 = W^1 z + sigma_b b^1, h^{l+1} = sigma_w / sqrt(n_l) W^{l+1} phi(h^l) + sigma_b b^{l+1}, with
    standard normal W, b; the output is h^{depth+1}. Recursion of docs/model.md, "The two-number kernel"; for erf,
    E[erf u erf v] = 2/pi asin(2c / (1 + 2a)) and E[erf' u erf' v] = 4 / (pi sqrt((1+2a)^2 - 4c^2)).
    """
    rho = torch.as_tensor(rho, dtype=torch.float64)
    sw, sb = weight_var, bias_var
    sig = rho + sb  # Sigma^0 (rho)
    sxx = torch.full_like(rho, 1.0 + sb)  # Sigma^0 at rho = 1
    theta = sig.clone()
    for _ in range(depth):
        if activation == "relu":
            cos = (sig / sxx).clamp(-1.0, 1.0)
            phi = torch.arccos(cos)
            new_sig = sw / (2 * math.pi) * sxx * (torch.sin(phi) + (math.pi - phi) * cos) + sb
            dot = sw * (math.pi - phi) / (2 * math.pi)
            new_sxx = sw / 2 * sxx + sb
        elif activation == "erf":
            den = 1 + 2 * sxx
            new_sig = sw * 2 / math.pi * torch.arcsin((2 * sig / den).clamp(-1.0, 1.0)) + sb
            dot = sw * 4 / (math.pi * torch.sqrt(den**2 - 4 * sig**2))
            new_sxx = sw * 2 / math.pi * torch.arcsin(2 * sxx / den) + sb
        else:
            raise ConfigError("kernel.activation", f"unknown activation {activation!r}; valid: relu, erf")
        theta = theta * dot + new_sig
        sig, sxx = new_sig, new_sxx
    return theta


def ntk_g1_g2(depth: int, activation: str = "relu", weight_var: float = 2.0, bias_var: float = 0.0) -> tuple[float, float]:
    """The two numbers of docs/model.md, "The two-number kernel": g1 = Theta(1), g2 = Theta(0)."""
    t = ntk_analytic(torch.tensor([1.0, 0.0], dtype=torch.float64), depth, activation, weight_var, bias_var)
    return float(t[0]), float(t[1])


def sphere_latents(n: int, dim: int, seed: int) -> torch.Tensor:
    """``(n, dim)`` float64 points uniform on the unit sphere S^{dim-1}, from ``seed``.

    The seed is mixed before it seeds torch's generator, so that latents and a network drawn from
    ``torch.Generator().manual_seed(seed)`` are independent (the same raw seed would make the
    first latents the normalised first rows of the network's first weight matrix).
    """
    g = torch.Generator().manual_seed((int(seed) * 2654435761 + 0x5BD1E995) % 2**63)
    z = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return z / z.norm(dim=1, keepdim=True)


class NtkMlp(nn.Module):
    """A finite-width FC network in the NTK parameterisation whose NTK tends to ``ntk_analytic``.

    ``forward(z: (n, latent_dim)) -> (n, out_dim)``; ``z`` on the unit sphere.
    """

    def __init__(self, latent_dim: int, width: int, depth: int, out_dim: int = 1, activation: str = "relu",
                 weight_var: float = 2.0, bias_var: float = 0.0, generator: Optional[torch.Generator] = None,
                 dtype=torch.float32):
        super().__init__()
        dims = [latent_dim] + [width] * depth + [out_dim]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(dims[i + 1], dims[i], generator=generator, dtype=dtype)) for i in range(depth + 1)]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.randn(dims[i + 1], generator=generator, dtype=dtype)) for i in range(depth + 1)]
        )
        self.act = torch.relu if activation == "relu" else torch.erf
        self.sw, self.sb = math.sqrt(weight_var), math.sqrt(bias_var)

    def forward(self, z):
        # index the lists one by one: torch.func.functional_call swaps parameters per index, and a
        # slice of a ParameterList would hand back the original, unswapped tensors
        h = z @ self.weights[0].T + self.sb * self.biases[0]
        for i in range(1, len(self.weights)):
            w = self.weights[i]
            h = self.act(h) @ w.T * (self.sw / math.sqrt(w.shape[1])) + self.sb * self.biases[i]
        return h


# ----------------------------------------------------------------------------- empirical NTK
def empirical_ntk(module: nn.Module, z: torch.Tensor, full: bool = False) -> torch.Tensor:
    """Empirical NTK of ``module`` at latents ``z: (N, d_z)``.

    Returns ``(N, N)`` = (1/d) sum_a Theta^{aa}(z_i, z_j) (the output-averaged kernel), or with
    ``full=True`` the whole ``(N, N, d, d)`` tensor Theta^{ab}(z_i, z_j) = sum_p dG^a_i/dp dG^b_j/dp.
    Memory: N * d * (number of parameters) floats for the Jacobian.
    """
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}

    def g(p, zi):
        return functional_call(module, p, (zi[None],))[0]

    jac = vmap(jacrev(g), in_dims=(None, 0))(params, z)  # name -> (N, d, *shape)
    n = z.shape[0]
    flat = torch.cat([j.reshape(n, j.shape[1], -1) for j in jac.values()], dim=-1)  # (N, d, P)
    if full:
        return torch.einsum("iap,jbp->ijab", flat, flat)
    return torch.einsum("iap,jap->ij", flat, flat) / flat.shape[1]


def _load_module(spec: str, kwargs: dict, plugins: Sequence[str] = ()) -> nn.Module:
    """The module ``factory(**kwargs)`` for ``spec`` = ``package.module:factory``, imported only
    from the config's ``plugins`` (:func:`gandy.core.plugins.load`: runs the plugin's code)."""
    factory = plugins_.load(spec, plugins, "kernel.module")
    if not callable(factory):
        raise ConfigError("kernel.module", f"{spec!r} is a {type(factory).__name__}, not a callable returning a module")
    try:
        m = factory(**kwargs)
    except Exception as e:  # the plugin's own code refused its kwargs or failed
        raise ConfigError("kernel.kwargs", f"{spec}(**kwargs) raised {type(e).__name__}: {e}") from None
    if not isinstance(m, nn.Module):
        raise ConfigError("kernel.module", f"{spec!r} returned {type(m).__name__}, not a torch.nn.Module")
    return m


# ----------------------------------------------------------------------------- registry
def _two_number(n, d, device, *, g1=1.0, g2=0.0, plugins=(), instance=None):
    return TwoNumber(n, g1, g2, device)


def _ntk(n, d, device, *, depth=2, activation="relu", weight_var=2.0, bias_var=0.0, latent_dim=100, latent_seed=0,
         plugins=(), instance=None):
    z = sphere_latents(n, latent_dim, latent_seed)
    k = ntk_analytic(z @ z.T, depth, activation, weight_var, bias_var)
    return Dense(k.to(device), "kernel", ntk_g1_g2(depth, activation, weight_var, bias_var))


def _empirical_ntk(n, d, device, *, module: Optional[str] = None, kwargs: Optional[dict] = None, latent_dim=16,
                   latent_seed=0, plugins: Sequence[str] = (), instance: Optional[nn.Module] = None):
    if instance is None:
        if module is None:
            raise ConfigError("kernel.module", "is required: package.module:factory from one of the config's plugins "
                                               "(or, from Python, gandy.run(cfg, kernel_module=...))")
        instance = _load_module(module, kwargs or {}, plugins)
    module = instance
    if not any(True for _ in module.parameters()):
        raise ConfigError("kernel.module", "the module has no parameters: its NTK is zero")
    z = sphere_latents(n, latent_dim, latent_seed).to(next(module.parameters()).dtype)
    try:
        out = module(z[:1])
    except Exception as e:
        raise ConfigError("kernel.latent_dim", f"module does not accept latents of dimension {latent_dim}: {e}") from None
    if out.ndim != 2 or out.shape[1] != d:
        raise ConfigError("kernel.module", f"module outputs shape {tuple(out.shape[1:])} per latent; the target has d = {d}")
    return Dense(empirical_ntk(module, z).detach().float().to(device), "kernel.module")


def _matrix(n, d, device, *, values=None, path=None, plugins=(), instance=None):
    field = "kernel.values" if values is not None else "kernel.path"
    if values is not None:
        try:
            k = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (ValueError, TypeError):
            raise ConfigError(field, "rows must all have the same length") from None
    else:  # the file's shape is checked from its header, before its data is read
        k = torch.as_tensor(load_array(path, None, field, lambda shape: _square(shape, n, field)).astype(np.float64))
    _square(tuple(k.shape), n, field)
    return Dense(k.to(device), field)


def _square(shape: tuple, n: int, field: str) -> None:
    """Refuse (ConfigError naming ``field``) a kernel matrix whose shape is not ``(n, n)``."""
    if tuple(shape) != (n, n):
        raise ConfigError(field, f"kernel matrix has shape {tuple(shape)}, expected ({n}, {n}) for particles.n = {n}")


KERNELS: dict[str, Callable[..., Kernel]] = {
    "two_number": _two_number,
    "ntk": _ntk,
    "empirical_ntk": _empirical_ntk,
    "matrix": _matrix,
}


def build_kernel(name: str, n: int, d: int, device="cpu", plugins: Sequence[str] = (),
                 instance: Optional[nn.Module] = None, **options) -> Kernel:
    """The kernel ``name`` for ``n`` particles in ``d`` dimensions from its ``options`` (keyword
    arguments of its builder in :data:`KERNELS`: the kernel section's other keys). ``plugins``: the
    config's ``plugins:`` (the only code an ``empirical_ntk`` module path may import);
    ``instance``: an ``empirical_ntk`` module given directly."""
    if name not in KERNELS:
        raise ConfigError("kernel.name", f"unknown kernel {name!r}; known: {', '.join(KERNELS)}")
    if instance is not None and name != "empirical_ntk":
        raise ConfigError("kernel.name", "a module was given, so the kernel must be empirical_ntk")
    return KERNELS[name](n, d, device, plugins=plugins, instance=instance, **options)
