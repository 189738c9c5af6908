"""A lone member's fast paths (issue 27): random draws made many uses ahead (the same bits as one
at a time, also across a checkpoint's restore), Adam as ``_foreach`` ops (the loop's numbers, bit
for bit), the whole particle step as one compiled call (the eager reference's trajectory to
rounding, diverged members labelled as before), and the engine ``auto`` picks for one run."""

from __future__ import annotations

import math

import pytest
import torch

import gandy
from gandy.core import fused, optim, rng
from gandy.core.optim import BatchedOptimizer, OptimSpec
from gandy.core.rng import Stream, member_keys
from gandy.core.step import advance, start
from gandy.core.targets import GaussianMixture, sample_ahead
from gandy.runs import config as C
from gandy.runs.build import build, choose_engine

TINY = {"target": {"name": "two_modes_1d"}, "particles": {"n": 16}, "critic": {"name": "mlp", "widths": [16]},
        "kernel": {"name": "two_number", "g1": 1.0, "g2": 0.3}, "optim": {"generator": {"lr": 0.05}},
        "penalty": {"name": "sobolev", "weight": 1.0}, "steps": 3, "seeds": [0]}


def _draws(stream: Stream, script) -> list:
    return [getattr(stream, kind)(*shape) for kind, shape in script]


SCRIPT = [("uniform", (5,)), ("normal", (3, 2)), ("randint", (7, 4)), ("uniform", (5,)), ("above", (0.3, 4, 4)),
          ("normal", (3, 2)), ("uniform", (300, 3))] * 30  # 210 calls: several refills, mixed sizes


@pytest.mark.parametrize("members", [1, 3])
def test_small_draws_made_ahead_are_the_bits_of_one_call_at_a_time(monkeypatch, members):
    keys = member_keys(range(members))
    ahead = _draws(Stream(keys, "data"), SCRIPT)
    monkeypatch.setattr(rng, "PREFETCH_BELOW", 0)  # every call hashed on its own, as before
    alone = _draws(Stream(keys, "data"), SCRIPT)
    assert len(ahead) == len(alone) == 210
    for a, b in zip(ahead, alone):
        assert a.dtype == b.dtype and torch.equal(a, b)


def _mixture():
    return GaussianMixture([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0]], [0.1, 0.2, 0.05], weights=[0.5, 0.3, 0.2])


@pytest.mark.parametrize("members", [1, 2])
def test_target_batches_drawn_ahead_equal_batches_drawn_one_by_one(members):
    target, keys = _mixture(), member_keys([4, 9][:members])
    one, ahead = Stream(keys, "data"), Stream(keys, "data")
    for t in range(150):  # past two blocks of 64
        assert torch.equal(sample_ahead(target, ahead, 32), target.sample(one, 32)), t
        assert ahead.counter == one.counter
        if t % 37 == 0:  # another draw on the same stream between batches: the block is not reused wrongly
            assert torch.equal(ahead.normal(3), one.normal(3))


def test_a_restored_counter_continues_the_same_numbers_mid_block():
    """A checkpoint saves the counter only: a fresh stream set to it (no block in memory) or the
    old stream set back to it gives the numbers an uninterrupted run gives."""
    target, keys = _mixture(), member_keys([1])
    run = Stream(keys, "data")
    batches = [sample_ahead(target, run, 16) for _ in range(100)]
    fresh = Stream(keys, "data")
    fresh.counter = 2 * 70  # two calls per batch: the state after 70 batches
    back = Stream(keys, "data")
    [sample_ahead(target, back, 16) for _ in range(90)]
    back.counter = 2 * 70
    for t in range(70, 100):
        assert torch.equal(sample_ahead(target, fresh, 16), batches[t])
        assert torch.equal(sample_ahead(target, back, 16), batches[t])


@pytest.mark.parametrize("members", [1, 3])
def test_normals_made_ahead_are_the_normals_of_one_call_at_a_time(members):
    keys = member_keys(range(members))
    ahead, one = Stream(keys, "latent"), Stream(keys, "latent")
    for t in range(140):
        shape = (32, 2) if t % 50 else (5, 3)  # a change of shape in between
        assert torch.equal(ahead.normal_ahead(*shape), one.normal(*shape)), t
    assert ahead.counter == one.counter


def test_large_batches_are_drawn_one_by_one():
    target, stream = _mixture(), Stream(member_keys([0]), "data")
    sample_ahead(target, stream, rng.AHEAD_BELOW)
    assert stream._memo is None and stream.counter == 2


def test_a_stream_cut_to_one_member_draws_that_members_numbers():
    """The damping study copies a stream and keeps one member's key: what was made ahead for the
    whole batch must not leak into the cut stream."""
    import copy

    both = Stream(member_keys([5, 6]), "penalty")
    both.uniform(4, 1)  # blocks made ahead for two members
    cut = copy.copy(both)
    cut.keys = both.keys[1:]
    assert torch.equal(cut.uniform(4, 1), _at(Stream(member_keys([6]), "penalty"), 1).uniform(4, 1))


def _at(stream: Stream, counter: int) -> Stream:
    stream.counter = counter
    return stream


def test_ahead_refuses_a_maker_whose_uses_differ():
    stream = Stream(member_keys([0]), "x")
    with pytest.raises(ValueError, match="equal uses"):
        stream.ahead("k", lambda k: torch.stack([stream.uniform(2) for _ in range(k + 1)]), uses=4)


@pytest.mark.parametrize("amsgrad,wd,clip", [(False, 0.0, None), (True, 1e-2, None), (False, 0.0, 0.05)])
def test_adam_as_foreach_ops_is_the_loop_bit_for_bit(monkeypatch, amsgrad, wd, clip):
    spec = OptimSpec("adam", amsgrad=amsgrad, weight_decay=wd, clip=clip)
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(2, 3, 5, generator=g), "b": torch.randn(2, 5, generator=g)}
    grads = [{k: torch.randn(v.shape, generator=g) for k, v in params.items()} for _ in range(6)]
    lr = torch.tensor([1e-2, 3e-3])

    def run():
        opt, p = BatchedOptimizer(spec, params, lr), params
        for gr in grads:
            p = opt.step(p, gr)
        return p, opt

    fast, fopt = run()
    monkeypatch.setattr(optim, "FOREACH_BELOW", -1)
    loop, lopt = run()
    for k in params:
        assert torch.equal(fast[k], loop[k]) and torch.equal(fopt.m[k], lopt.m[k]) and torch.equal(fopt.v[k], lopt.v[k])
    # and both are torch's Adam (member 0 by hand with torch.optim.Adam)
    p0 = {k: v[0].clone().requires_grad_(True) for k, v in params.items()}
    ref = torch.optim.Adam(p0.values(), lr=1e-2, amsgrad=amsgrad, weight_decay=wd)
    for gr in grads:
        for k, v in p0.items():
            v.grad = gr[k][0].clone()
        ref.step()
        if clip is not None:
            with torch.no_grad():
                for v in p0.values():
                    v.clamp_(-clip, clip)
    for k in params:
        torch.testing.assert_close(fast[k][0], p0[k].detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("amsgrad,wd,clip", [(False, 0.0, None), (True, 1e-2, 0.5)])
def test_a_lone_members_adam_is_torchs_fused_kernel_equal_to_the_loop_to_rounding(amsgrad, wd, clip):
    """One member: torch's fused Adam kernel on copies (the inputs untouched); two members: the
    loop. The same numbers to rounding over 6 steps, and torch.optim.Adam's."""
    spec = OptimSpec("adam", amsgrad=amsgrad, weight_decay=wd, clip=clip)
    g = torch.Generator().manual_seed(1)
    params = {"w": torch.randn(1, 3, 5, generator=g), "b": torch.randn(1, 5, generator=g)}
    grads = [{k: torch.randn(v.shape, generator=g) for k, v in params.items()} for _ in range(6)]
    grads[2]["w"] = torch.randn(1, 5, 3, generator=g).transpose(1, 2)  # autograd gives transposed ones
    kept = {k: v.clone() for k, v in params.items()}
    lone, p1 = BatchedOptimizer(spec, params, torch.tensor([3e-3])), params
    pair, p2 = BatchedOptimizer(spec, {k: v.expand(2, *v.shape[1:]).clone() for k, v in params.items()},
                                torch.tensor([3e-3, 3e-3])), {k: v.expand(2, *v.shape[1:]).clone() for k, v in params.items()}
    for gr in grads:
        p1 = lone.step(p1, gr)
        p2 = pair.step(p2, {k: v.expand(2, *v.shape[1:]) for k, v in gr.items()})
    for k in params:
        assert torch.equal(params[k], kept[k])
        torch.testing.assert_close(p1[k][0], p2[k][0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(lone.v[k][0], pair.v[k][0], rtol=1e-6, atol=1e-9)


def _pair(over, engine, seeds=(0,), steps=40):
    sim = build(C.load_config(TINY, [*over, f"engine={engine}", f"seeds={list(seeds)}"]))
    st = start(sim, list(seeds))
    for _ in range(steps):
        advance(sim, st)
    return sim, st


@pytest.mark.parametrize("over", [[], ["objective=ns", "penalty.name=r1", "optim.critic.amsgrad=true"],
                                  ["critic.widths=[8, 8]", "critic.activation=tanh", "kernel.g2=0.05"],
                                  ["optim.order=simultaneous", "optim.critic.weight_decay=0.01",
                                   "optim.generator.force=mean"]])
def test_the_whole_step_compiled_follows_the_eager_trajectory(over):
    sim, st = _pair(over, "compiled")
    assert fused.applies(sim, st, sim.mover), "the step should run as one compiled call"
    _, ref = _pair(over, "eager")
    torch.testing.assert_close(st.x, ref.x, rtol=1e-4, atol=1e-5)
    for k in ref.params:
        torch.testing.assert_close(st.params[k], ref.params[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(st.force_norm, ref.force_norm, rtol=1e-4, atol=1e-6)
    assert st.streams["data"].counter == ref.streams["data"].counter


def test_the_whole_step_labels_a_member_that_blows_up():
    """A member whose points turn non-finite (poisoned at step 5) or run past the blow-up radius
    (a huge generator step) diverges under the compiled step as under eager: at the same step,
    frozen and zeroed, the others untouched."""
    runs = {}
    for engine in ("compiled", "eager"):
        sim = build(C.load_config(TINY, [f"engine={engine}", "seeds=[0, 1, 2]"]))
        st = start(sim, [0, 1, 2])
        st.members.generator_lr[2] = 1e12
        for t in range(12):
            if t == 5:
                st.x[1, 0, 0] = float("inf")
            advance(sim, st)
        assert fused.applies(sim, st, sim.mover) == (engine == "compiled")
        runs[engine] = st
    c, e = runs["compiled"], runs["eager"]
    assert c.diverged_step.tolist() == e.diverged_step.tolist()
    assert c.diverged_step[0] == -1 and c.diverged_step[1] == 6 and c.diverged_step[2] > 0
    assert c.alive.tolist() == [True, False, False] and bool((c.x[1:] == 0).all())
    torch.testing.assert_close(c.x[0], e.x[0], rtol=1e-4, atol=1e-5)


def test_the_whole_step_is_not_taken_where_it_does_not_apply():
    sim, st = _pair(["optim.critic.steps=2"], "compiled", steps=1)
    assert not fused.applies(sim, st, sim.mover)
    sim, st = _pair(["optim.critic.name=sgd"], "compiled", steps=1)
    assert not fused.applies(sim, st, sim.mover)
    sim, st = _pair([], "eager", steps=1)
    assert not fused.applies(sim, st, sim.mover)


def test_auto_runs_a_lone_short_run_with_the_fewest_ops_and_a_long_one_compiled():
    assert choose_engine(build(C.load_config(TINY, ["steps=2000", "engine=eager"])), 1, single=True) == "eager"
    sim = build(C.load_config(TINY, ["steps=2000"]))
    assert sim.single and sim.engine.name == "closed_form"
    assert choose_engine(build(C.load_config(TINY, ["steps=100000"])), 1, single=True) == "compiled"
    assert choose_engine(build(C.load_config(TINY, ["steps=2000"])), 256, single=True) == "compiled"
    # a sweep's chunk of one runs what its other chunks run (eager here), whatever its size
    assert choose_engine(sim, 1) == choose_engine(sim, 7) == "eager"
    # a critic the closed form does not run: eager for short runs
    assert choose_engine(build(C.load_config(TINY, ["steps=2000", "critic.activation=gelu", "penalty.name=wgan_gp"])),
                         1, single=True) == "eager"
    res = gandy.run(C.load_config(TINY, ["steps=20"]), figures=False)
    assert res.summary["engine"] == "closed_form"
    assert math.isfinite(float(res.metrics.w1.iloc[-1]))
