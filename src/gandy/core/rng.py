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


def _hash_block(heads: torch.Tensor, n: int) -> torch.Tensor:
    """Element i of every call's draw: ``(..., n)`` int64 in [0, 2**32) from heads ``(...)`` (the
    hash of element i depends only on its head and i, so several calls hash at once)."""
    idx = torch.arange(n, dtype=torch.int64, device=heads.device)
    h = _mix(idx * 0x27D4EB2F + heads[..., None])
    return _mix(h ^ heads[..., None])


def _hash(head: torch.Tensor, n: int) -> torch.Tensor:
    """Element i of member b's draw: ``(B, n)`` int64 in [0, 2**32) from the members' heads ``(B,)``."""
    return _hash_block(head, n)


PREFETCH_BELOW = 512
"""Draws of fewer numbers than this (all members together) are hashed ``PREFETCH_CALLS`` calls
ahead, in one pass (:meth:`Stream._bits`): a small draw costs ~40 tensor ops of a few microseconds
each whatever its size, so a lone member's data batch cost more than its critic step (issue 27)."""

PREFETCH_CALLS = 64

AHEAD_BELOW = 8192
"""Draws of fewer numbers than this (all members) may be made many uses ahead at once with
:meth:`Stream.ahead` (:meth:`Stream.normal_ahead`, :func:`gandy.core.targets.sample_ahead`)."""


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """:func:`_mix` on int32 tensors: multiplication wraps modulo 2**32 (two's complement), and the
    logical right shifts are the arithmetic ones masked; the same 32 bits, as signed int32."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x7FEB352D
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * (0x846CA68B - (1 << 32))
    return x ^ ((x >> 16) & 0xFFFF)


def _hash32(head: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`_hash` in int32 arithmetic (the same integers, ``(B, n)`` int64 in [0, 2**32)): AVX2
    multiplies 32-bit lanes natively and emulates 64-bit ones, so compiled it is ~4x the int64
    hash compiled (a 100 x 1,024 dropout mask: 0.14 ms against 0.52; eager int64: 1.2)."""
    idx = torch.arange(n, dtype=torch.int32, device=head.device)
    h32 = (head - ((head >> 31) << 32)).to(torch.int32)  # the low 32 bits as a signed int32
    h = _mix32(idx[None, :] * 0x27D4EB2F + h32[:, None])
    return _mix32(h ^ h32[:, None]).to(torch.int64) & _MASK


LARGE_DRAW = 1 << 14
"""Draws of at least this many numbers (all members together) use the compiled hash once
:func:`compile_large_draws` has been called: the same bits, ~8x faster (a lone member's dropout
mask of 100 x 1,024 numbers, 40 per particle step of the mnist-collapse critic: 1.2 ms eager, 0.14
compiled, on one CPU thread)."""

_COMPILED: dict = {}


def compile_large_draws() -> None:
    """Compile the hash for large draws (``engine: compiled`` calls this; ~7 s once per process,
    one kernel for every shape, :func:`_hash32`). The numbers do not change: integer arithmetic
    is exact."""
    if "hash" not in _COMPILED:
        _COMPILED["hash"] = torch.compile(_hash32, dynamic=True)


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
        self.salt = name_key(name)
        self.keys = keys
        self.counter = 0
        """Calls made so far: the only state (checkpoints save it; the bits and values made ahead
        are a cache of what the next calls return, valid at any counter)."""

    @property
    def keys(self) -> torch.Tensor:
        """``(B,)`` int64 member keys; setting them (a stream cut to some members) drops what was
        made ahead for the old ones."""
        return self._keys

    @keys.setter
    def keys(self, keys: torch.Tensor) -> None:
        self._keys = keys
        self._base = _mix(keys ^ self.salt)  # (B,): the stream's head before the counter
        self._ahead: tuple | None = None  # (first counter, width, bits (B, PREFETCH_CALLS, width))
        self._memo: tuple | None = None  # (key, first counter, calls per use, values (uses, B, ...))

    def _heads(self, first: int, calls: int = 1) -> torch.Tensor:
        """``(B, calls)`` heads of calls ``first, first + 1, ...``: ``mix(base_b + counter * golden)``."""
        counters = torch.arange(first, first + calls, dtype=torch.int64, device=self._keys.device)
        return _mix(self._base[:, None] + counters * 0x9E3779B9)

    def _bits(self, shape: tuple[int, ...]) -> torch.Tensor:
        """``(B, *shape)`` int64 in [0, 2**32): element i of call ``counter`` of member b is
        ``_hash`` of i under the head ``mix(base_b + counter * golden)``. Small draws come from bits
        hashed ``PREFETCH_CALLS`` calls ahead (the same integers, see :data:`PREFETCH_BELOW`)."""
        n = math.prod(int(x) for x in shape)
        b, c = self.keys.shape[0], self.counter
        self.counter += 1
        if n * b < PREFETCH_BELOW:
            ahead = self._ahead
            if ahead is None or not ahead[0] <= c < ahead[0] + PREFETCH_CALLS or n > ahead[1]:
                width = n if ahead is None or ahead[1] * b >= PREFETCH_BELOW else max(n, ahead[1])
                ahead = self._ahead = (c, width, _hash_block(self._heads(c, PREFETCH_CALLS), width))
            return ahead[2][:, c - ahead[0], :n].reshape((b, *shape))
        head = self._heads(c)[:, 0]
        fast = _COMPILED.get("hash") if n * b >= LARGE_DRAW else None
        return (fast or _hash)(head, n).reshape((b, *shape))

    def ahead(self, key, make, uses: int = PREFETCH_CALLS):
        """The next use of a draw made ``uses`` uses ahead: ``make(k)`` must make ``k`` successive
        uses' values at once, stacked ``(k, ...)``, drawing from this stream exactly as ``k`` uses
        would (each use the same number of calls). Value j is what the j-th use from the counter at
        which it was made returns, so the numbers are those of drawing one use at a time; only the
        counter is state (advanced by one use per call). ``key`` names what ``make`` draws (values
        are reused only for the same key, at a counter they were made for)."""
        memo = self._memo
        c = self.counter
        if memo is not None and memo[0] == key and memo[2] > 0:
            j, r = divmod(c - memo[1], memo[2])
            if r == 0 and 0 <= j < memo[3].shape[0]:
                self.counter = c + memo[2]
                return memo[3][j]
        values = make(uses)
        calls, r = divmod(self.counter - c, uses)
        if r or calls == 0:
            raise ValueError(f"make({uses}) drew {self.counter - c} calls, not {uses} equal uses")
        self._memo = (key, c, calls, values)
        self.counter = c + calls
        return values[0]

    def block(self, uses: int, *shapes: tuple) -> list[torch.Tensor]:
        """The bits of ``uses`` successive uses each making one call per shape in ``shapes`` (in
        that order): per shape ``(B, uses, *shape)`` int64, equal to what the calls one by one
        return; the counter advances by ``uses * len(shapes)``."""
        b, c = self.keys.shape[0], self.counter
        k = len(shapes)
        sizes = [math.prod(int(x) for x in sh) for sh in shapes]
        bits = _hash_block(self._heads(c, uses * k), max(sizes)).view(b, uses, k, -1)
        self.counter = c + uses * k
        return [bits[:, :, i, :n].reshape(b, uses, *sh) for i, (n, sh) in enumerate(zip(sizes, shapes))]

    @staticmethod
    def to_uniform(bits: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Bits (int64 in [0, 2**32)) as the uniforms :meth:`uniform` makes of them."""
        return ((bits >> 9).to(torch.float64).add_(0.5).mul_(2.0**-23)).to(dtype)

    @staticmethod
    def to_normal(bits: torch.Tensor, dim: int, dtype=torch.float32) -> torch.Tensor:
        """Bits with the uniform pair at ``dim`` (size 2) as the normals :meth:`normal` makes of
        them: Box-Muller, ``sqrt(-2 log u0) cos(2 pi u1)`` in float64."""
        u = Stream.to_uniform(bits, torch.float64)
        z = torch.sqrt(-2.0 * torch.log(u.select(dim, 0))) * torch.cos(2.0 * torch.pi * u.select(dim, 1))
        return z.to(dtype)

    def uniform(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """U(0, 1) samples, ``(B, *shape)``, strictly inside (0, 1) in any float dtype.

        23 bits: (k + 1/2) 2^-23 lies in [2^-24, 1 - 2^-24], exactly representable in float32, so
        the cast never rounds onto 0 or 1.
        """
        return Stream.to_uniform(self._bits(tuple(shape)), dtype)

    def above(self, p: float, *shape: int) -> torch.Tensor:
        """``uniform(*shape) >= p`` as a bool tensor ``(B, *shape)``, the same draw and the same
        result, compared on the integers (no float passes; for dropout masks). ``p`` is rounded to
        float32 first, as the float comparison does."""
        k = math.ceil(float(np.float32(p)) * 2.0**23 - 0.5)
        return (self._bits(tuple(shape)) >> 9) >= k

    def normal(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """N(0, 1) samples, ``(B, *shape)`` (Box-Muller on two uniforms)."""
        return Stream.to_normal(self._bits((2, *shape)), 1, dtype)

    def normal_ahead(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """:meth:`normal`, the same numbers, made ``PREFETCH_CALLS`` uses ahead in one pass where the
        draw is small (:data:`AHEAD_BELOW` numbers, all members): a network generator's latents,
        two small draws per step."""
        if self.keys.shape[0] * 2 * math.prod(shape) >= AHEAD_BELOW:
            return self.normal(*shape, dtype=dtype)
        return self.ahead(("normal", shape, dtype),
                          lambda k: Stream.to_normal(self.block(k, (2, *shape))[0], 2, dtype).movedim(1, 0))

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """Integers in [0, high), ``(B, *shape)`` int64."""
        return self._bits(tuple(shape)) % int(high)
