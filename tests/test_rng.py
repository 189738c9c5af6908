"""Counter-based random numbers (gandy.core.rng)."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import pytest
import torch

from gandy.core.rng import Stream, _mix, member_keys, name_key

N = 100_000


def _lowbias32(x: int) -> int:
    """Wellons' lowbias32 on Python ints (arbitrary precision, explicit 32-bit masking)."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def test_mix_is_lowbias32_despite_int64_wraparound():
    vals = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFE, 0xFFFFFFFF, 2**40 + 7, -1, -123456]
    out = _mix(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert out == [_lowbias32(v) for v in vals]
    assert all(0 <= v < 2**32 for v in out)
    # lowbias32 fixes 0 and scrambles 1
    assert out[0] == 0 and out[1] != 1


def test_uniform_moments():
    u = Stream(member_keys([0]), "uniform").uniform(N, dtype=torch.float64)[0]
    assert u.shape == (N,)
    assert u.min() > 0 and u.max() < 1
    # 3-sigma: sd(mean) = sqrt(1/12 / N); sd(var) = sqrt((1/80 - 1/144) / N)
    assert abs(u.mean().item() - 0.5) < 3 * math.sqrt(1 / 12 / N)
    assert abs(u.var().item() - 1 / 12) < 3 * math.sqrt((1 / 80 - 1 / 144) / N)


def test_uniform_is_uniform_ks_and_uncorrelated():
    from scipy import stats

    u = Stream(member_keys([1]), "uniform").uniform(N, dtype=torch.float64)[0]
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3
    # neighbouring elements uncorrelated: sd(corr) ~ 1/sqrt(N)
    c = torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()
    assert abs(c) < 4 / math.sqrt(N)
    # a histogram over 20 bins is flat (chi-square, 19 dof)
    counts = torch.histc(u, bins=20, min=0, max=1)
    chi2 = (((counts - N / 20) ** 2) / (N / 20)).sum().item()
    assert stats.chi2.sf(chi2, 19) > 1e-3


def test_uniform_across_members_uncorrelated():
    u = Stream(member_keys(range(200)), "uniform").uniform(500, dtype=torch.float64)
    # member means are independent: their spread is sqrt(1/12/500)
    sd = u.mean(-1).std().item()
    assert sd == pytest.approx(math.sqrt(1 / 12 / 500), rel=0.25)
    c = torch.corrcoef(torch.stack([u[:-1].reshape(-1), u[1:].reshape(-1)]))[0, 1].item()
    assert abs(c) < 4 / math.sqrt(u[1:].numel())


def test_normal_moments():
    from scipy import stats

    z = Stream(member_keys([0]), "normal").normal(N, dtype=torch.float64)[0]
    assert torch.isfinite(z).all()
    assert abs(z.mean().item()) < 3 / math.sqrt(N)
    assert abs(z.std().item() - 1.0) < 3 * math.sqrt(1 / (2 * N))
    # fourth moment 3 (sd of the sample kurtosis ~ sqrt(24 / N))
    k = ((z - z.mean()) ** 4).mean().item() / z.var().item() ** 2
    assert abs(k - 3.0) < 4 * math.sqrt(24 / N)
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3


def test_normal_and_uniform_default_to_float32_with_shape():
    s = Stream(member_keys([0, 1, 2]), "x")
    assert s.uniform(4, 5).shape == (3, 4, 5) and s.uniform(4, 5).dtype == torch.float32
    assert s.normal(2, 3, 4).shape == (3, 2, 3, 4) and s.normal(7).dtype == torch.float32
    r = s.randint(5, 1000)
    assert r.shape == (3, 1000) and r.dtype == torch.int64
    assert r.min() >= 0 and r.max() < 5
    assert set(r.unique().tolist()) == {0, 1, 2, 3, 4}


def test_uniform_float32_never_reaches_one_or_zero_over_many_draws():
    u = Stream(member_keys(range(64)), "u32").uniform(4096)
    assert u.dtype == torch.float32
    assert u.min() > 0 and u.max() < 1


def test_uniform_float32_strictly_below_one_known_counterexample():
    # seed 65375, stream 'uniform', element 15 of the first call has all top bits set: with 24 bits
    # (k + 0.5) 2^-24 rounded to float32 was exactly 1.0; with 23 bits the top value is 1 - 2^-24
    u = Stream(member_keys([65375]), "uniform").uniform(16)
    u64 = Stream(member_keys([65375]), "uniform").uniform(16, dtype=torch.float64)
    assert u64[0, 15].item() == 1.0 - 2.0**-24
    assert u[0, 15].item() == 1.0 - 2.0**-24 < 1.0


@pytest.mark.parametrize("kind", ["uniform", "normal", "randint"])
def test_batch_independence(kind):
    """A member's numbers are the same whether drawn with keys [s] or [a, s, b]."""

    def draws(seeds):
        st = Stream(member_keys(seeds), "data")
        out = []
        for shape in [(5,), (3, 4), (1,)]:
            if kind == "uniform":
                out.append(st.uniform(*shape))
            elif kind == "normal":
                out.append(st.normal(*shape))
            else:
                out.append(st.randint(1000, *shape))
        return out

    alone = draws([42])
    inside = draws([7, 42, 1000003])
    for a, i in zip(alone, inside):
        assert torch.equal(a[0], i[1])
        assert not torch.equal(i[0], i[1])


def test_batch_independence_member_keys():
    assert torch.equal(member_keys([5, 6, 7])[1:2], member_keys([6]))


def test_different_names_give_different_numbers():
    keys = member_keys([0, 1])
    a = Stream(keys, "data").uniform(1000)
    b = Stream(keys, "critic").uniform(1000)
    assert not torch.equal(a, b)
    assert (a == b).float().mean() < 0.01
    c = torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]).double())[0, 1].item()
    assert abs(c) < 4 / math.sqrt(a.numel())
    assert name_key("data") != name_key("critic")


def test_same_name_same_numbers():
    keys = member_keys([0, 1])
    assert torch.equal(Stream(keys, "data").normal(50), Stream(keys, "data").normal(50))


def test_successive_calls_differ():
    s = Stream(member_keys([0, 1]), "data")
    a, b = s.uniform(1000), s.uniform(1000)
    assert (a == b).float().mean() < 0.01
    assert s.counter == 2
    # and calls of different kinds also advance the counter
    s.normal(3)
    s.randint(4, 2)
    assert s.counter == 4


def test_different_members_differ():
    u = Stream(member_keys([0, 1]), "data").uniform(1000)
    assert (u[0] == u[1]).float().mean() < 0.01


def test_member_keys_deterministic():
    k1 = member_keys([1, 2])
    k2 = member_keys([1, 2])
    assert k1.dtype == torch.int64 and k1.shape == (2,)
    assert torch.equal(k1, k2)
    assert k1[0] != k1[1]
    assert all(0 <= v < 2**32 for v in k1.tolist())
    # and equal to the documented construction lowbias32(lowbias32(s) ^ 0x5BD1E995)
    assert k1.tolist() == [_lowbias32(_lowbias32(s) ^ 0x5BD1E995) for s in (1, 2)]


def test_name_key_is_blake2s_not_python_hash():
    assert name_key("penalty") == int.from_bytes(hashlib.blake2s(b"penalty", digest_size=4).digest(), "little")


def test_draws_are_reproducible_across_processes():
    """Independent of Python's hash seed: a fresh interpreter with another PYTHONHASHSEED agrees."""
    code = (
        "import torch; from gandy.core.rng import Stream, member_keys; "
        "k = member_keys([1, 2]); s = Stream(k, 'data'); "
        "print(k.tolist(), s.uniform(3, dtype=torch.float64).tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    k = member_keys([1, 2])
    here = f"{k.tolist()} {Stream(k, 'data').uniform(3, dtype=torch.float64).tolist()}"
    assert out.strip() == here


def test_negative_and_large_seeds_are_accepted():
    k = member_keys([-1, 2**31, 2**40])
    assert k.shape == (3,) and (k >= 0).all() and (k < 2**32).all()
    u = Stream(k, "x").uniform(10)
    assert torch.isfinite(u).all()


def test_compiled_hash_for_large_draws_gives_the_same_bits():
    """The compiled engine compiles the hash of large draws (dropout masks): bit-identical numbers,
    whatever the shape (one dynamic-shape kernel), the small draws untouched."""
    from gandy.core import rng

    draws = [(4, (300, 128)), (3, (1000, 50)), (1, (100, 1024)), (2, (7,))]
    before = [Stream(member_keys(list(range(b))), "x").uniform(*shape) for b, shape in draws]
    rng.compile_large_draws()
    try:
        after = [Stream(member_keys(list(range(b))), "x").uniform(*shape) for b, shape in draws]
    finally:
        rng._COMPILED.clear()
    for a, c in zip(before, after):
        assert torch.equal(a, c)


def test_the_int32_hash_is_the_int64_hash_bit_for_bit():
    """The hash the compiled engine uses for large draws, in 32-bit lanes with wrap-around, gives
    the integers of the int64 one: heads across the whole 32-bit range and past it (the low 32 bits
    count), counters and members."""
    from gandy.core.rng import _hash, _hash32

    g = torch.Generator().manual_seed(3)
    heads = torch.cat([torch.randint(0, 2**32, (64,), generator=g, dtype=torch.int64),
                       torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 5, 2**40 + 2**31])])
    for n in (1, 17, 4096):
        assert torch.equal(_hash32(heads, n), _hash(heads, n))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.3, 1e-7, 0.9999999])
def test_above_is_uniform_at_least_p(p):
    a = Stream(member_keys([0, 1, 2]), "drop").above(p, 200, 300)
    u = Stream(member_keys([0, 1, 2]), "drop").uniform(200, 300)
    assert torch.equal(a, u >= p)
    assert abs(float(a.double().mean()) - (1 - p)) < 0.005
