"""Counter-based random numbers, keyed per batch member.

Every random draw in gandy is a pure function of ``(member key, stream name, call counter,
element index)``: a 32-bit integer hash evaluated with vectorised tensor ops. Consequences:

* a member's numbers do not depend on which other members share its batch, nor on the batch
  size, the chunking of a sweep or the order in which chunks run;
* the same key gives the same numbers on CPU and CUDA (integer arithmetic is exact);
* no Python loop over members and no per-member ``torch.Generator`` objects.

The hash is Wellons' ``lowbias32`` (two multiply-xorshift rounds), applied to 32-bit values held
in int64 tensors; only the low 32 bits are kept after each multiply, so int64 wrap-around is
harmless. Uniforms carry 23 bits; normals come from the Box-Muller transform.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

_MASK = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on the low 32 bits of an int64 tensor; returns values in [0, 2**32)."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK
    x = x ^ (x >> 16)
    return x


def _hash(head: torch.Tensor, n: int) -> torch.Tensor:
    """Element i of member b's draw: ``(B, n)`` int64 in [0, 2**32) from the members' heads ``(B,)``."""
    idx = torch.arange(n, dtype=torch.int64, device=head.device)
    h = _mix(idx[None, :] * 0x27D4EB2F + head[:, None])
    return _mix(h ^ head[:, None])


LARGE_DRAW = 1 << 17
"""Draws of at least this many numbers (all members together) use the compiled hash once
:func:`compile_large_draws` has been called: the same bits, 5-6x faster (a dropout mask of
8 x 100 x 1024 numbers: 29 ms eager, 5 ms compiled, on one CPU thread)."""

_COMPILED: dict = {}


def compile_large_draws() -> None:
    """Compile the hash for large draws (``engine: compiled`` calls this; ~7 s once per process,
    one kernel for every shape). The numbers do not change: integer arithmetic is exact."""
    if "hash" not in _COMPILED:
        _COMPILED["hash"] = torch.compile(_hash, dynamic=True)


def name_key(name: str) -> int:
    """A stable 32-bit key for a stream name (independent of Python's hash seed)."""
    return int.from_bytes(hashlib.blake2s(name.encode(), digest_size=4).digest(), "little")


def member_keys(seeds, device=None) -> torch.Tensor:
    """Per-member keys from integer seeds: ``(B,)`` int64."""
    s = torch.as_tensor(list(seeds), dtype=torch.int64, device=device)
    return _mix(_mix(s) ^ 0x5BD1E995)


class Stream:
    """A named stream of random tensors for a batch of members.

    ``keys: (B,)`` int64. Each call to :meth:`uniform` / :meth:`normal` advances a counter, so
    successive calls give fresh numbers; two streams with different names are independent.
    """

    def __init__(self, keys: torch.Tensor, name: str):
        self.keys = keys
        self.salt = name_key(name)
        self.counter = 0

    def _bits(self, shape: tuple[int, ...]) -> torch.Tensor:
        """``(B, *shape)`` int64 in [0, 2**32)."""
        n = 1
        for s in shape:
            n *= int(s)
        head = _mix(self.keys ^ self.salt)  # (B,)
        head = _mix(head + self.counter * 0x9E3779B9)
        self.counter += 1
        fast = _COMPILED.get("hash") if n * head.shape[0] >= LARGE_DRAW else None
        return (fast or _hash)(head, n).reshape((self.keys.shape[0], *shape))

    def uniform(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """U(0, 1) samples, ``(B, *shape)``, strictly inside (0, 1) in any float dtype.

        23 bits: (k + 1/2) 2^-23 lies in [2^-24, 1 - 2^-24], exactly representable in float32, so
        the cast never rounds onto 0 or 1.
        """
        b = self._bits(tuple(shape))
        return ((b >> 9).to(torch.float64).add_(0.5).mul_(2.0**-23)).to(dtype)

    def above(self, p: float, *shape: int) -> torch.Tensor:
        """``uniform(*shape) >= p`` as a bool tensor ``(B, *shape)``, the same draw and the same
        result, compared on the integers (no float passes; for dropout masks). ``p`` is rounded to
        float32 first, as the float comparison does."""
        k = math.ceil(float(np.float32(p)) * 2.0**23 - 0.5)
        return (self._bits(tuple(shape)) >> 9) >= k

    def normal(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """N(0, 1) samples, ``(B, *shape)`` (Box-Muller on two uniforms)."""
        u = self.uniform(2, *shape, dtype=torch.float64)
        z = torch.sqrt(-2.0 * torch.log(u[:, 0])) * torch.cos(2.0 * torch.pi * u[:, 1])
        return z.to(dtype)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """Integers in [0, high), ``(B, *shape)`` int64."""
        return self._bits(tuple(shape)) % int(high)
