"""The executor of member lists (gandy.runs.execute.run_members): rounds of members into one
output folder, resumption after an interruption, rows equal to a one-shot sweep bit for bit, and
the refusal of a member index that the folder holds as another member."""

from __future__ import annotations

import copy
import re

import pandas as pd
import pytest

from gandy.runs import config as C
from gandy.runs import execute
from gandy.runs.execute import run_members
from gandy.runs.outputs import scoped_locks
from gandy.runs.plan import members_at
from gandy.runs.store import prepare_out, start_sweep
from gandy.runs.sweep import run_sweep

BASE = {
    "target": {"name": "two_modes_1d"},
    "particles": {"n": 16},
    "critic": {"name": "mlp", "widths": [16]},
    "optim": {"critic": {"name": "adam", "lr": 0.01}, "generator": {"lr": 0.01}},
    "steps": 40,
    "log_every": 20,
    "seeds": [0, 1],
}
ROUND_1 = [{"kernel.g2": 0.1}, {"kernel.g2": 0.3}]
ROUND_2 = [{"kernel.g2": 0.5}, {"kernel.g2": 0.7}]


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    """The sweep of both rounds' points at once: its (results, metrics)."""
    d = copy.deepcopy(BASE)
    d["sweep"] = {"kernel.g2": [p["kernel.g2"] for p in ROUND_1 + ROUND_2]}
    res, met, _ = run_sweep(C.load_config(d), tmp_path_factory.mktemp("one_shot") / "s")
    return res, met


DONE = re.compile(r"chunk (\d{7}) done: (\d+) of (\d+) chunks, (\d+) of (\d+) members, \d+:\d\d:\d\d so far, "
                  r"about (\d+:\d\d:\d\d) to go at this rate")


def chunks_done(said: list) -> list:
    """The (chunk, chunks done, of, members done, of) of each line after the first that
    ``execute`` told its ``echo`` as it stored a chunk; the last says nothing is left."""
    found = [DONE.fullmatch(line) for line in said[1:]]
    assert all(found), said
    assert found[-1].group(6) == "0:00:00"
    return [m.groups()[:5] for m in found]


def _folder(out):
    """A prepared output folder, as a command that runs members would make it."""
    prepare_out(out, "sweep")
    start_sweep(out, C.dump_config(C.load_config(BASE)))
    return out


def _rounds():
    cfg = C.load_config(BASE)
    first = members_at(cfg, ROUND_1, section="sweep")
    return first, members_at(cfg, ROUND_2, first=len(first), section="sweep")


def test_a_second_round_runs_only_the_new_members_and_rows_equal_one_shot(tmp_path, one_shot):
    first, second = _rounds()
    assert [m.index for m in first] == [0, 1, 2, 3] and [m.index for m in second] == [4, 5, 6, 7]
    with scoped_locks():
        out = _folder(tmp_path / "o")
        a = run_members(first, out)
        assert len(a.results) == 4 and a.ran
        said = []
        b = run_members(first + second, out, echo=said.append)
        ran = {i for cid in b.ran for i in b.chunks[cid]}
        assert ran == {4, 5, 6, 7}  # the first round's members were not run again
        assert said[0] == "8 members in 2 chunks; 1 already done" and sorted(b.results.member) == list(range(8))
        assert chunks_done(said) == [("0000004", "1", "1", "4", "4")]
        # the first round's rows come back as they were stored
        pd.testing.assert_frame_equal(b.results[b.results.member < 4].reset_index(drop=True), a.results, check_exact=True)
        c = run_members(first + second, out)  # re-asking finished members costs nothing
        assert c.ran == []
        only_new = run_members(second, out)  # and a subset comes back alone
        assert only_new.ran == [] and sorted(only_new.results.member) == [4, 5, 6, 7]
    res, met = one_shot
    pd.testing.assert_frame_equal(b.results, res, check_exact=True)
    pd.testing.assert_frame_equal(b.metrics, met, check_exact=True)
    pd.testing.assert_frame_equal(c.results, res, check_exact=True)


class Killed(Exception):
    pass


def _kill_after(monkeypatch, stored: int):
    """Interrupt the run after ``stored`` chunks are stored, as a kill between two chunks would."""
    real, count = execute.write_chunk, []

    def write_chunk(*args):
        if len(count) == stored:
            raise Killed()
        count.append(1)
        real(*args)

    monkeypatch.setattr(execute, "write_chunk", write_chunk)
    return lambda: monkeypatch.setattr(execute, "write_chunk", real)


@pytest.mark.parametrize("round_killed", [1, 2])
def test_an_interrupted_round_asked_again_keeps_its_cut_and_gives_the_uninterrupted_rows(tmp_path, monkeypatch,
                                                                                       one_shot, round_killed):
    """Round 1 killed, or round 2 killed in a folder that holds round 1: asked again, the round is
    cut as its first attempt cut it (its stored chunks kept, the others run), every member runs
    once, and the rows are the one-shot sweep's, bit for bit."""
    first, second = _rounds()
    with scoped_locks():
        out = _folder(tmp_path / "o")
        if round_killed == 1:
            asked, options = first, {"chunk": 1}  # four chunks of one
        else:
            run_members(first, out)  # one chunk of four
            asked, options = first + second, {"workers": 3}  # round 2 alone: chunks [4, 5], [6, 7] (none of one)
        restore = _kill_after(monkeypatch, 1)
        with pytest.raises(Killed):
            run_members(asked, out, **options)
        restore()
        said = []
        again = run_members(asked, out, echo=said.append, **options)
        if round_killed == 1:
            assert said[0] == "4 members in 4 chunks; 1 already done"
            assert chunks_done(said) == [(f"000000{i}", str(i), "3", str(i), "3") for i in (1, 2, 3)]
            assert again.ran == ["0000001", "0000002", "0000003"]
        else:  # round 1's chunk, round 2's first chunk stored before the kill, and its other two
            assert said[0] == "8 members in 3 chunks; 2 already done"
            assert chunks_done(said) == [("0000006", "1", "1", "2", "2")]
            assert again.ran == ["0000006"] and again.chunks["0000006"] == [6, 7]
        last = run_members(first + second, out, chunk=1)  # whatever is still missing, then every row
    res, met = one_shot
    pd.testing.assert_frame_equal(last.results, res, check_exact=True)
    pd.testing.assert_frame_equal(last.metrics, met, check_exact=True)


def test_an_index_the_folder_holds_as_another_member_is_refused_before_any_work(tmp_path):
    first, _ = _rounds()
    cfg = C.load_config(BASE)
    with scoped_locks():
        out = _folder(tmp_path / "o")
        run_members(first[:2], out)
        before = sorted(p.name for p in (out / "chunks").iterdir())
        other = members_at(cfg, [{"kernel.g2": 0.9}], section="sweep")  # numbered from 0 again
        with pytest.raises(C.ConfigError) as e:
            run_members(other, out)
        assert e.value.field == "out" and "member 0" in e.value.message
        assert sorted(p.name for p in (out / "chunks").iterdir()) == before
    with pytest.raises(ValueError):
        run_members(first + first, tmp_path / "x")  # two members with one index


def test_a_gpu_chunk_takes_a_share_of_the_devices_total_memory_and_cuts_the_same_way_each_time(monkeypatch):
    """On a GPU an auto chunk may take GPU_SHARE of the device's total memory (a chunk there is
    launch-bound: more members cost little); the total, never the free memory, so that a resumed
    sweep cuts its members into the chunks it stored. Stands in for a CUDA device: no GPU needed."""
    import torch

    from gandy.runs import budget, plan

    grid = {"logspace": [0.01, 0.5], "num": 40}
    d = {**copy.deepcopy(BASE), "particles": {"n": 4096}, "critic": {"name": "mlp", "widths": [512, 512]},
         "seeds": [0], "sweep": {"kernel.g2": grid, "optim.critic.lr": {"logspace": [1e-4, 1e-2], "num": 10}}}
    cfg = C.load_config(d)
    members = plan.expand(cfg)[1]
    per = budget.member_bytes(members[0].config, 4096, 1)
    host = plan.cut(members)  # the host's 1 GB budget, and its fast_chunk cap
    assert len(host) > 1
    total = 80e9

    class Props:
        total_memory = total

    monkeypatch.setattr(plan, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: pytest.fail("the free memory was read"))
    size = min(budget.MAX_CHUNK, int(budget.GPU_SHARE * total // per))
    assert 1 < size < len(members), "the test's sizes should make the share bind"
    gpu = plan.cut(members)
    assert [len(c.members) for c in gpu] == [len(m) for m in _balanced(len(members), -(-len(members) // size))]
    assert plan.cut(members) == gpu  # the same cut on every invocation
    assert budget.chunk_budget(torch.device("cpu"), 1e9) == 1e9


def _balanced(n: int, count: int) -> list[range]:
    """``n`` members cut into ``count`` chunks whose sizes differ by at most one, in order."""
    bounds = [round(i * n / count) for i in range(count + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def test_clock_writes_hours_minutes_and_seconds():
    assert [execute.clock(s) for s in (0, 59.6, 3725.4, 90061, -3)] == ["0:00:00", "0:01:00", "1:02:05", "25:01:01", "0:00:00"]


def test_image_members_run_two_to_a_chunk_on_a_cpu_and_mlp_members_share_chunks(monkeypatch):
    """The DCGAN critic's ``cpu_chunk`` (grouped convolutions make larger batches no cheaper per
    member on a CPU, and a chunk of one is padded to two: benchmarks/image_step.py --study) cuts an
    image sweep on the CPU into two-member chunks; an MLP sweep keeps the speed model's larger
    chunks, and on a GPU the image sweep batches whole."""
    import torch

    from gandy.runs import budget, plan

    images = C.load_config({"target": {"name": "mnist"}, "generator": {"name": "dcgan", "width": 8},
                            "critic": {"name": "dcgan", "width": 8}, "batch_size": 8, "particles": {"n": 8},
                            "steps": 2, "seeds": [0, 1], "sweep": {"optim.critic.lr": {"logspace": [1e-4, 1e-3], "num": 3}}})
    members = plan.expand(images)[1]
    assert len(members) == 6 and budget.fast_chunk(images, 784) == 2
    assert [len(c.members) for c in plan.cut(members)] == [2] * 3
    mlp = C.load_config({**copy.deepcopy(BASE), "seeds": [0, 1], "sweep": {"kernel.g2": {"linspace": [0.1, 0.9], "num": 3}}})
    assert [len(c.members) for c in plan.cut(plan.expand(mlp)[1])] == [6]

    class Props:
        total_memory = 80e9

    monkeypatch.setattr(plan, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    assert [len(c.members) for c in plan.cut(members)] == [6]


def test_an_image_member_trains_to_the_same_bits_in_a_chunk_of_one_and_of_two(tmp_path):
    """Why two image members to a chunk cost nothing in exactness: a chunk of one is padded to two
    (gandy.runs.loop.simulate), so a member's logged numbers and final samples are bit for bit the
    same alone and beside another member (a DCGAN gan_gp search, two seeds of one draw)."""
    import numpy as np

    from gandy.runs.sweep import run_sweep

    base = {"target": {"name": "color_mnist"}, "objective": "ns", "penalty": {"name": "wgan_gp", "weight": 3.0},
            "generator": {"name": "dcgan", "latent_dim": 8, "width": 4, "norm": "batch"},
            "critic": {"name": "dcgan", "width": 4, "norm": "layer"}, "batch_size": 8, "particles": {"n": 8},
            "steps": 4, "log_every": 2, "seeds": [0, 1], "metrics": {"images": {"enabled": False}}}
    tables = {}
    for size in (1, 2):
        cfg = C.load_config({**base, "sweep": {"optim.critic.lr": [3e-3], "batch_size": size}})
        res, metrics, _ = run_sweep(cfg, tmp_path / f"c{size}")
        assert len(list((tmp_path / f"c{size}" / "chunks").glob("*.results.parquet"))) == 2 // size
        tables[size] = (res.sort_values("member").reset_index(drop=True), metrics.sort_values(["member", "step"]).reset_index(drop=True))
    (r1, m1), (r2, m2) = tables[1], tables[2]
    for col in ("mean_norm", "force_norm", "com_error", "displacement", "mean_abs_cos"):  # the trajectory: bit for bit
        assert np.array_equal(m1[col].to_numpy(), m2[col].to_numpy(), equal_nan=True), col
    # the logged W1 (a distance matrix of 2,352-D samples, the logs of a pass stacked) may round
    # apart in its last bits: 4e-9 of 47 seen
    assert np.allclose(m1.w1.to_numpy(), m2.w1.to_numpy(), rtol=1e-9, atol=0)
    assert np.allclose(r1.w1.to_numpy(), r2.w1.to_numpy(), rtol=1e-9, atol=0) and r1.w1.nunique() == 2  # two members


def test_a_resume_drops_the_live_rows_of_chunks_that_will_not_resume_from_them(tmp_path):
    """Before anything runs, ``execute`` removes the live rows (``chunks/ID.live.jsonl``, which
    ``gandy watch`` reads as running chunks) of a chunk of another cut and of a chunk without a
    checkpoint (it starts again at step 0); a chunk resuming from its checkpoint keeps its rows, and
    a file the output's manifest does not record (not gandy's) is left alone."""
    from gandy.runs.loop import LiveRows
    from gandy.runs.store import checkpoint_path, live_path

    first, _ = _rounds()
    with scoped_locks():
        out = _folder(tmp_path / "o")
        row = [{"member": 0, "seed": 0, "step": 0}]
        for cid in ("0000009", "0000002", "0000000"):  # another cut's; no checkpoint; resuming
            LiveRows(live_path(out, cid), row).close()
        checkpoint_path(out, "0000000").write_bytes(b"")  # not a valid checkpoint: the chunk restarts
        foreign = live_path(out, "0000007")
        foreign.write_text("a user's file\n")
        seen = {}

        def echo(line: str) -> None:
            if not seen:  # the first line: told after the cut, before any chunk runs
                seen.update({cid: live_path(out, cid).exists() for cid in ("0000009", "0000002", "0000000", "0000007")})

        run_members(first, out, chunk=2, echo=echo)
        assert seen == {"0000009": False, "0000002": False, "0000000": True, "0000007": True}
        assert foreign.read_text() == "a user's file\n"
