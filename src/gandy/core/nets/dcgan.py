"""DCGAN-style generator and critic for 28 x 28 images, batched over members.

Like every network in gandy, each member of a batch has its own weights (a dict of ``(B, ...)``
tensors) and the networks are pure functions ``forward(params, x)``. Members are folded into
channel groups: a batch of images ``(B, n, C*28*28)`` is laid out as ``(n, B*C, 28, 28)`` and every
convolution runs once with ``groups=B``, so B members cost one grouped convolution, not B calls,
and no member can see another's channels.

Generator (``latent_dim`` k, ``width`` w, C channels)::

    z (k) -> linear -> (2w, 7, 7) -> norm, ReLU -> ConvT 4x4 s2 p1 -> (w, 14, 14) -> norm, ReLU
          -> ConvT 4x4 s2 p1 -> (C, 28, 28) -> tanh

Critic::

    x (C, 28, 28) -> Conv 4x4 s2 p1 -> (w, 14, 14) -> LeakyReLU(0.2) -> Conv 4x4 s2 p1 -> (2w, 7, 7)
          -> norm -> LeakyReLU(0.2) -> linear -> logit

Norms: ``batch`` uses the batch statistics of each member's images (per channel over images and
pixels; no running averages, so evaluation also uses batch statistics), ``layer`` normalises each
image over (C, H, W) (GroupNorm with one group), both with a learned per-channel scale and shift;
``none``. Initialisation (DCGAN): weights ~ N(0, 0.02), biases 0, scales 1, shifts 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as Fn

from gandy.core.nets.base import Critic, CriticEntry, GeneratorEntry, bmv, image_channels

SIDE = 28
NORMS = ("batch", "layer", "none")
EPS = 1e-5


def _normal(stream, *shape) -> torch.Tensor:
    return 0.02 * stream.normal(*shape)


def _zeros(stream, *shape) -> torch.Tensor:
    return torch.zeros(stream.keys.shape[0], *shape, device=stream.keys.device)


def _norm(h: torch.Tensor, kind: str, b: int, gamma, beta) -> torch.Tensor:
    """``h: (n, B*c, H, W)``; ``gamma``, ``beta``: ``(B, c)``. torch's own kernels: ``batch`` is
    batch norm over the ``B*c`` channels (each member's channel over its images and pixels),
    ``layer`` group norm with ``B`` groups (each member's part of an image over (c, H, W)); the
    members never mix. (Written out as mean and var, the norm took ~4 ms a call against ~0.3 for
    the kernels at (64, 128, 7, 7), 1 thread: a third of a DCGAN step.)"""
    if kind == "none":
        return h
    if kind == "batch":  # batch statistics always: no running averages
        return Fn.batch_norm(h, None, None, gamma.reshape(-1), beta.reshape(-1), training=True, eps=EPS)
    return Fn.group_norm(h, b, gamma.reshape(-1), beta.reshape(-1), eps=EPS)


def _check(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


class DcganGenerator:
    """G(z): ``forward(params, z: (B, n, k)) -> (B, n, C*784)`` in [-1, 1]; z ~ N(0, I)."""

    def __init__(self, latent_dim: int = 64, channels: int = 1, width: int = 64, norm: str = "batch"):
        self.latent_dim, self.c, self.w, self.norm = latent_dim, channels, width, _check(norm)

    def latent(self, stream, n: int) -> torch.Tensor:
        return stream.normal(n, self.latent_dim)

    def init(self, stream, b: int) -> dict:
        w, k, c = self.w, self.latent_dim, self.c
        p = {
            "fc_w": _normal(stream, k, 2 * w * 49),  # (B, k, 2w*49)
            "fc_b": _zeros(stream, 2 * w * 49),
            "up1_w": _normal(stream, 2 * w, w, 4, 4),  # (B, in, out, 4, 4): transposed conv
            "up1_b": _zeros(stream, w),
            "up2_w": _normal(stream, w, c, 4, 4),
            "up2_b": _zeros(stream, c),
        }
        if self.norm != "none":
            p.update(n0_g=torch.ones_like(p["fc_b"][:, :2 * w]), n0_b=_zeros(stream, 2 * w),
                     n1_g=torch.ones_like(p["up1_b"]), n1_b=_zeros(stream, w))
        return p

    def parameter_count(self) -> int:
        """Numbers per member in ``init``'s parameters, from the shapes alone."""
        w, k, c = self.w, self.latent_dim, self.c
        count = k * 2 * w * 49 + 2 * w * 49 + 2 * w * w * 16 + w + w * c * 16 + c
        return count + (2 * 2 * w + 2 * w if self.norm != "none" else 0)

    def forward(self, params: dict, z: torch.Tensor) -> torch.Tensor:
        b, n, _ = z.shape
        w, c = self.w, self.c
        h = torch.baddbmm(params["fc_b"][:, None, :], z, params["fc_w"])  # (B, n, 2w*49)
        h = h.reshape(b, n, 2 * w, 7, 7).transpose(0, 1).reshape(n, b * 2 * w, 7, 7)
        if self.norm != "none":
            h = _norm(h, self.norm, b, params["n0_g"], params["n0_b"])
        h = torch.relu(h)
        h = Fn.conv_transpose2d(h, params["up1_w"].reshape(b * 2 * w, w, 4, 4), params["up1_b"].reshape(-1),
                                stride=2, padding=1, groups=b)  # (n, B*w, 14, 14)
        if self.norm != "none":
            h = _norm(h, self.norm, b, params["n1_g"], params["n1_b"])
        h = torch.relu(h)
        h = Fn.conv_transpose2d(h, params["up2_w"].reshape(b * w, c, 4, 4), params["up2_b"].reshape(-1),
                                stride=2, padding=1, groups=b)  # (n, B*C, 28, 28)
        return torch.tanh(h).reshape(n, b, c * SIDE * SIDE).transpose(0, 1)


class DcganCritic(Critic):
    """f(x): ``forward(params, x: (B, M, C*784)) -> (B, M)`` logits."""

    def __init__(self, channels: int = 1, width: int = 64, norm: str = "none"):
        self.c, self.w, self.norm = channels, width, _check(norm)

    def init(self, stream, b: int) -> dict:
        w, c = self.w, self.c
        p = {
            "c1_w": _normal(stream, w, c, 4, 4),  # (B, out, in, 4, 4)
            "c1_b": _zeros(stream, w),
            "c2_w": _normal(stream, 2 * w, w, 4, 4),
            "c2_b": _zeros(stream, 2 * w),
            "fc_w": _normal(stream, 2 * w * 49),  # (B, 2w*49)
            "fc_b": _zeros(stream),  # (B,)
        }
        if self.norm != "none":
            p.update(n_g=torch.ones_like(p["c2_b"]), n_b=_zeros(stream, 2 * w))
        return p

    def parameter_count(self) -> int:
        """Numbers per member in ``init``'s parameters, from the shapes alone."""
        w, c = self.w, self.c
        count = w * c * 16 + w + 2 * w * w * 16 + 2 * w + 2 * w * 49 + 1
        return count + (2 * 2 * w if self.norm != "none" else 0)

    def forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        b, m, _ = x.shape
        w, c = self.w, self.c
        h = x.reshape(b, m, c, SIDE, SIDE).transpose(0, 1).reshape(m, b * c, SIDE, SIDE)
        h = Fn.conv2d(h, params["c1_w"].reshape(b * w, c, 4, 4), params["c1_b"].reshape(-1), stride=2, padding=1,
                      groups=b)
        h = Fn.leaky_relu(h, 0.2)
        h = Fn.conv2d(h, params["c2_w"].reshape(b * 2 * w, w, 4, 4), params["c2_b"].reshape(-1), stride=2, padding=1,
                      groups=b)  # (M, B*2w, 7, 7)
        if self.norm != "none":
            h = _norm(h, self.norm, b, params["n_g"], params["n_b"])
        h = Fn.leaky_relu(h, 0.2)
        h = h.reshape(m, b, 2 * w * 49).transpose(0, 1)  # (B, M, 2w*49)
        return bmv(h, params["fc_w"]) + params["fc_b"][:, None]


CRITICS = {"dcgan": CriticEntry(
    build=lambda d, target, init, *, width=64, norm="none": DcganCritic(image_channels(target, "critic.name"), width, norm),
    units=lambda d, *, width=64, **_: 294 * width + d,  # (w, 14, 14) and (2w, 7, 7) feature maps
    widths=lambda **_: (8,),  # the planner's nominal MLP size for a critic of no MLP widths (its value before #25)
    size="width",
    engines=("eager", "compiled"),
    # grouped convolutions do not make B members cheaper on a CPU (2 batched: 0.90-0.95x the
    # images/s of the two run alone), but a sweep's chunk of one is padded to two (its numbers bit
    # for bit those it gets beside others: gandy.runs.loop.simulate), which halves its images/s: two
    # to a chunk train 1.98-2.00x a chunk of one (benchmarks/image_step.py --study, RESULTS.md)
    cpu_chunk=2)}
GENERATORS = {"dcgan": GeneratorEntry(
    build=lambda target, d, *, latent_dim=64, width=64, norm="batch": DcganGenerator(
        latent_dim, image_channels(target, "generator.name"), width, norm),
    units=lambda d, *, width=64, **_: 294 * width + d, size="width")}
