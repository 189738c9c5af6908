"""The "Adding a new X" recipes of docs/architecture.md, measured (issue 25, item 8).

Each recipe is a scripted minimal addition of a dummy X: a list of :class:`Edit` (one contiguous
insertion or replacement in a file of ``src/gandy``, or a new file) applied to a temporary copy of
the package. A check then uses the dummy the way a user would, in a fresh interpreter that imports
the copy: a tiny run naming the new objective, penalty, critic, generator, target or kernel; the new
metric column read back from ``metrics.parquet``, ``results.parquet`` and the report; a sweep over
the new per-member key in one batch; ``gandy run NAME --quick`` for the new experiment; a sweep run
by the new executor.

* Sufficiency (default run): every recipe's edits applied to one copy, every check passes (one
  subprocess for all).
* Necessity (``-m slow``): for each edit of each recipe, the recipe without that edit fails its
  check (or the package refuses it with an error): every counted place is needed.
* The table: the files and edits each recipe counts are the numbers docs/architecture.md states
  ("places: F files, E edits"); the table's numbers come from here, not from hope.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gandy"
DOC = ROOT / "docs" / "architecture.md"
TAG = "RECIPE-RESULTS "


@dataclass(frozen=True)
class Edit:
    """One place a recipe changes: in ``file`` (relative to ``src/gandy``), ``text`` inserted
    ``after`` or ``before`` the unique ``anchor``, or ``replace``-ing it; ``anchor`` None: ``file``
    is a new file holding ``text``."""

    file: str
    anchor: Optional[str]
    text: str
    where: str = "after"


def new_file(file: str, text: str) -> Edit:
    return Edit(file, None, textwrap.dedent(text).lstrip("\n"))


def code(text: str) -> str:
    """A block of code to insert, dedented, ending in one newline."""
    return textwrap.dedent(text).strip("\n") + "\n"


# ----------------------------------------------------------------------------- the recipes
RECIPES: dict[str, list[Edit]] = {
    "objective": [
        Edit("core/objectives.py", '                  gen_dloss=_minus_one),\n',
             '    "recipe_game": Game("recipe_game", lambda fr, ff: 2 * _ipm_critic(fr, ff), lambda ff: -2 * ff,\n'
             '                        "twice ipm (a test\'s dummy)"),\n'),
    ],
    "penalty": [
        Edit("core/objectives.py", 'ENGINES = ("eager", "compiled", "closed_form")\n', code('''
            def recipe_penalty(forward, params, real, fake, stream, spec: PenaltySpec, grad=None):
                """E_Q f^2 (a test's dummy)."""
                return (forward(params, fake) ** 2).mean(-1)


            '''), where="before"),
        Edit("core/objectives.py", '    "dragan": Penalty(dragan, ("eager",)),\n',
             '    "recipe_penalty": Penalty(recipe_penalty, ("eager",)),\n'),
    ],
    "critic": [
        Edit("core/nets/features.py", "class Affine:\n", code('''
            class RecipeCritic(Critic):
                """f(x) = scale * w . tanh(x), w initialised at zero (a test's dummy)."""

                def __init__(self, d: int, scale: float):
                    self.d, self.scale = d, scale

                def init(self, stream, b):
                    return {"w": torch.zeros(b, self.d, device=stream.keys.device)}

                def parameter_count(self) -> int:
                    return self.d

                def forward(self, params, x):
                    return self.scale * bmv(torch.tanh(x), params["w"])


            '''), where="before"),
        Edit("core/nets/features.py", "CRITICS = {\n",
             '    "recipe_critic": CriticEntry(build=lambda d, target, init, *, scale=1.0: RecipeCritic(d, scale),\n'
             '                                 units=lambda d, **_: d, widths=lambda **_: (8,), size=None,\n'
             '                                 engines=("eager",)),\n'),
        Edit("runs/config.py", "CriticConfig = Annotated[\n", code('''
            class RecipeCriticSection(Section):
                name: Literal["recipe_critic"]
                scale: PosFloat = 1.0


            '''), where="before"),
        Edit("runs/config.py", "LinearCritic, DcganCritic", ", RecipeCriticSection"),
    ],
    "generator": [
        Edit("core/nets/features.py", "def _affine(target, d: int, *, init_offset: float = 1.0):\n", code('''
            class RecipeGenerator:
                """G(z) = z W + b, z ~ N(0, I) in d dimensions, W ~ std N(0, I) (a test's dummy)."""

                def __init__(self, d: int, std: float):
                    self.d, self.std, self.latent_dim = d, std, d

                def latent(self, stream: Stream, n: int) -> torch.Tensor:
                    return stream.normal(n, self.d)

                def init(self, stream: Stream, b: int) -> dict:
                    return {"w": self.std * stream.normal(self.d, self.d),
                            "b": torch.zeros(b, self.d, device=stream.keys.device)}

                def parameter_count(self) -> int:
                    return self.d * self.d + self.d

                def forward(self, params: dict, z: torch.Tensor) -> torch.Tensor:
                    return torch.baddbmm(params["b"][:, None, :], z, params["w"])


            '''), where="before"),
        Edit("core/nets/features.py", "GENERATORS = {",
             '"recipe_generator": GeneratorEntry(build=lambda target, d, *, std=1.0: RecipeGenerator(d, std),\n'
             '                                                 units=lambda d, **_: d, size=None),\n              '),
        Edit("runs/config.py", "GeneratorConfig = Annotated[", code('''
            class RecipeGeneratorSection(Section):
                name: Literal["recipe_generator"]
                std: PosFloat = 1.0


            '''), where="before"),
        Edit("runs/config.py", "AffineGenerator, DcganGenerator", ", RecipeGeneratorSection"),
    ],
    "target": [
        Edit("core/targets.py", "TARGETS: dict[str, Callable[..., Target]] = {\n", code('''
            def _recipe_target(device, *, center=3.0, assign="euclidean"):
                """One Gaussian at ``center`` on the line (a test's dummy)."""
                return GaussianMixture([[center]], 0.1, None, assign, device)


            '''), where="before"),
        Edit("core/targets.py", "TARGETS: dict[str, Callable[..., Target]] = {\n",
             '    "recipe_target": _recipe_target,\n'),
        Edit("runs/config.py", "TargetConfig = Annotated[\n", code('''
            class RecipeTargetSection(_TargetBase):
                name: Literal["recipe_target"]
                center: Float = 3.0


            '''), where="before"),
        Edit("runs/config.py", "        ParallelLinesTarget,\n", "        RecipeTargetSection,\n"),
    ],
    "kernel": [
        Edit("core/kernels.py", "KERNELS: dict[str, Callable[..., Kernel]] = {\n", code('''
            def _recipe_kernel(n, d, device, *, scale=1.0, plugins=(), instance=None):
                """K = scale * I (a test's dummy)."""
                return Dense(scale * torch.eye(n, device=device), "kernel")


            '''), where="before"),
        Edit("core/kernels.py", "KERNELS: dict[str, Callable[..., Kernel]] = {\n",
             '    "recipe_kernel": _recipe_kernel,\n'),
        Edit("runs/config.py", "KernelConfig = Annotated[\n", code('''
            class RecipeKernelSection(Section):
                name: Literal["recipe_kernel"]
                scale: PosFloat = 1.0


            '''), where="before"),
        Edit("runs/config.py", "EmpiricalNtkKernel, MatrixKernel", ", RecipeKernelSection"),
    ],
    "metric column": [
        Edit("core/metrics/order.py", '"displacement", "mean_norm"', ', "recipe_metric"'),
        Edit("core/metrics/order.py", "ORDER_PARAMETER_DOCS = {\n",
             '    "recipe_metric": "largest |x_i| over the particles (a test\'s dummy)",\n'),
        Edit("core/metrics/order.py", '    out["mean_norm"] = xs.norm(dim=-1).mean(-1).double()\n',
             '    out["recipe_metric"] = xs.norm(dim=-1).amax(-1).double()\n'),
    ],
    "per-member key": [
        Edit("runs/members.py", '"penalty.weight": "penalty_weight"', ', "phase.blowup": "blowup"'),
        Edit("core/step.py", "    g2: Optional[torch.Tensor] = None\n", "    blowup: Optional[torch.Tensor] = None\n"),
        Edit("core/step.py", "limit = sim.step.blowup * sim.target.scale",
             "limit = st.members.blowup * sim.target.scale", where="replace"),
    ],
    "experiment": [
        new_file("studies/recipe_study/config.yaml", """
            target: {name: two_modes_1d}
            particles: {n: 8}
            critic: {name: mlp, widths: [8]}
            steps: 40
            log_every: 10
            seeds: [0]
            """),
        new_file("studies/recipe_study/experiment.py", '''
            """recipe-study: one run of its packaged config (a test's dummy)."""

            from __future__ import annotations

            from pathlib import Path

            from gandy.runs.api import run as run_config
            from gandy.runs.config import load_config
            from gandy.studies.base import Experiment, StudyOptions, open_study, packaged, write_summary
            from gandy.views.plots import plot_run

            QUICK = ["steps=6", "log_every=3"]


            def run(out: Path, options: StudyOptions = StudyOptions()) -> list[Path]:
                cfg = load_config(packaged(__name__), [*(QUICK if options.quick else []), *options.overrides])
                out = open_study(out, options)
                res = run_config(cfg, out / "run", draw=plot_run)
                write_summary(out, {"experiment": "recipe-study", "quick": options.quick,
                                    "steps": int(res.metrics.step.max())})
                return sorted((out / "run" / "figures").glob("*.png"))


            EXPERIMENT = Experiment("recipe-study", "a test's dummy", run)
            '''),
        Edit("studies/__init__.py", "from gandy.studies.universality import experiment as universality\n",
             "from gandy.studies.recipe_study import experiment as recipe_study\n"),
        Edit("studies/__init__.py", "    saturation.EXPERIMENT,\n", "    recipe_study.EXPERIMENT,\n"),
    ],
    "executor": [
        Edit("runs/executors.py", "@dataclass(frozen=True)\nclass Executor:\n", code('''
            RECIPE_RAN: list = []


            def run_recipe(task: Callable, chunks: list, done: Callable, address: Optional[str] = None,
                           step: Callable = lambda k: None, checkpoints: Callable = lambda ch: None,
                           workers: int = 1) -> None:
                """In this process, the last chunk first (a test's dummy); records the chunks it ran."""
                for ch in reversed(chunks):
                    RECIPE_RAN.append(ch)
                    done(ch, task(ch, on_step=step, checkpoint=checkpoints(ch)))


            '''), where="before"),
        Edit("runs/executors.py", '    "ray": Executor("ray", run_ray, check_ray),\n',
             '    "recipe": Executor("recipe", run_recipe),\n'),
    ],
}


# ----------------------------------------------------------------------------- the checks
# Each runs in a fresh interpreter whose ``gandy`` is the edited copy; it raises where the dummy
# does not work end to end. ``work`` is an empty folder of its own.
def _tiny(**over) -> dict:
    cfg = {"target": {"name": "two_modes_1d"}, "particles": {"n": 4}, "critic": {"name": "mlp", "widths": [8]},
           "penalty": {"name": "none"}, "steps": 6, "log_every": 3, "seeds": [0]}
    cfg.update(over)
    return cfg


def _refused(cfg: dict, field: str) -> None:
    """``cfg`` is refused before any work with a ConfigError on ``field``."""
    import gandy

    try:
        gandy.run(cfg)
    except gandy.ConfigError as e:
        assert e.field == field, e
        return
    raise AssertionError(f"expected a ConfigError on {field}")


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from gandy.cli import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, (r.exit_code, r.output, r.exception)
    return r


def check_objective(work: Path) -> None:
    import gandy

    game = gandy.run(_tiny(objective="recipe_game"))
    ipm = gandy.run(_tiny(objective="ipm"))
    assert game.summary["objective"]["name"] == "recipe_game"
    # twice ipm: the same critic (Adam is scale-free) and twice its force
    ratio = game.metrics.force_norm.iloc[-1] / ipm.metrics.force_norm.iloc[-1]
    assert abs(ratio - 2.0) < 1e-2, ratio


def check_penalty(work: Path) -> None:
    import gandy

    on = gandy.run(_tiny(penalty={"name": "recipe_penalty", "weight": 1.0}))
    off = gandy.run(_tiny(penalty={"name": "recipe_penalty", "weight": 0.0}))
    assert on.config.penalty.name == "recipe_penalty"
    assert on.metrics.force_norm.iloc[-1] != off.metrics.force_norm.iloc[-1]  # the weight acts: the penalty runs
    _refused(_tiny(penalty={"name": "recipe_penalty", "weight": 1.0}, engine="compiled"), "engine")


def check_critic(work: Path) -> None:
    import gandy

    a = gandy.run(_tiny(critic={"name": "recipe_critic", "scale": 1.0}), out=work / "run")
    b = gandy.run(_tiny(critic={"name": "recipe_critic", "scale": 2.0}))
    assert a.results.displacement.iloc[0] > 0
    assert a.metrics.force_norm.iloc[-1] != b.metrics.force_norm.iloc[-1]  # its option reaches it
    _refused(_tiny(critic={"name": "recipe_critic"}, engine="compiled"), "engine")


def check_generator(work: Path) -> None:
    import gandy

    net = {"particles": {"n": 16}}  # the divergences need a few samples
    res = gandy.run(_tiny(generator={"name": "recipe_generator", "std": 0.5}, **net), out=work / "run")
    wide = gandy.run(_tiny(generator={"name": "recipe_generator", "std": 2.0}, **net))
    assert res.config.generator.name == "recipe_generator"
    m = res.metrics
    assert m.mean_norm.notna().all() and res.results.displacement.iloc[0] > 0  # the generator's samples moved
    assert wide.metrics.mean_norm.iloc[0] > m.mean_norm.iloc[0]  # its option reaches it


def check_target(work: Path) -> None:
    import gandy

    res = gandy.run(_tiny(target={"name": "recipe_target", "center": 3.0}), out=work / "run")
    assert res.summary["n_modes"] == 1
    assert 2.5 < res.metrics.com_error.iloc[0] < 3.5  # the particles start at 0, the target at 3


def check_kernel(work: Path) -> None:
    import numpy as np

    import gandy

    res = gandy.run(_tiny(kernel={"name": "recipe_kernel", "scale": 2.0}), out=work / "run")
    same = gandy.run(_tiny(kernel={"name": "two_number", "g1": 2.0, "g2": 0.0}))  # 2 I as well
    assert np.array_equal(res.particles, same.particles)


def check_metric_column(work: Path) -> None:
    import numpy as np
    import pandas as pd

    import gandy
    from gandy.views.report import write_report

    out = work / "run"
    gandy.run(_tiny(), out=out)
    m = pd.read_parquet(out / "metrics.parquet")
    traj = np.load(out / "trajectory.npz")
    assert list(traj["steps"]) == list(m.step), (list(traj["steps"]), list(m.step))
    expect = np.abs(traj["particles"][0, :, :, 0]).max(-1)  # (T,): largest |x_i| at each logged step
    assert np.allclose(m.recipe_metric.to_numpy(), expect, rtol=1e-5), (m.recipe_metric, expect)
    assert "recipe_metric" in pd.read_parquet(out / "results.parquet").columns, "not in results.parquet"
    write_report(out, echo=lambda s: None)
    assert "largest |x_i| over the particles" in (out / "report.html").read_text(), "not in the report's protocols"


def check_per_member_key(work: Path) -> None:
    import gandy

    res = gandy.run(_tiny(sweep={"phase.blowup": [1e6, 1e-6]}), out=work / "sweep")
    assert res.summary["sweep"]["chunks"] == 1, res.summary["sweep"]  # one batch
    r = res.results.set_index("phase.blowup")
    assert r.loc[1e6, "diverged_step"] == -1 and r.loc[1e-6, "diverged_step"] == 1, r.diverged_step
    assert r.loc[1e-6, "phase"] == "diverged" and r.loc[1e6, "phase"] != "diverged"


def check_experiment(work: Path) -> None:
    import json as json_

    assert "recipe-study" in _cli(["experiments"]).output, "gandy experiments does not list it"
    out = work / "study"
    r = _cli(["run", "recipe-study", "--quick", "--quiet", "--out", str(out)])
    assert json_.loads((out / "summary.json").read_text())["steps"] == 6
    assert any(line.strip().endswith(".png") for line in r.output.splitlines()), r.output


def check_executor(work: Path) -> None:
    import pandas as pd
    import yaml

    from gandy.runs import executors

    cfg = work / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(_tiny(seeds=[0, 1], sweep={"kernel.g2": [0.0, 0.5], "batch_size": 2})))
    _cli(["run", str(cfg), "--executor", "recipe", "--quiet", "--out", str(work / "recipe")])
    assert len(executors.RECIPE_RAN) == 2, executors.RECIPE_RAN  # it ran both chunks
    _cli(["run", str(cfg), "--quiet", "--out", str(work / "local")])
    cols = ["kernel.g2", "seed", "w1", "com_error", "phase"]

    def table(name):
        return pd.read_parquet(work / name / "results.parquet")[cols].sort_values(["kernel.g2", "seed"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(table("recipe"), table("local"))


CHECKS: dict[str, Callable[[Path], None]] = {
    "objective": check_objective, "penalty": check_penalty, "critic": check_critic, "generator": check_generator,
    "target": check_target, "kernel": check_kernel, "metric column": check_metric_column,
    "per-member key": check_per_member_key, "experiment": check_experiment, "executor": check_executor,
}


def _main(names: list[str], work: str, package: str) -> None:
    """Run the checks ``names`` (in this interpreter, whose ``gandy`` must be ``package``); print one
    line ``TAG {name: "ok" | why it failed}``."""
    import torch

    torch.set_num_threads(1)
    out = {}
    for name in names:
        folder = Path(work) / name.replace(" ", "_")
        folder.mkdir(parents=True)
        try:
            import gandy

            assert Path(gandy.__file__).resolve().parent == Path(package).resolve(), gandy.__file__
            CHECKS[name](folder)
            out[name] = "ok"
        except BaseException as e:  # every failure (SystemExit too) is this check's answer
            out[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
    print(TAG + json.dumps(out))


# ----------------------------------------------------------------------------- applying and running
def apply(root: Path, edits: list[Edit]) -> None:
    """Apply ``edits`` to the package copy ``root`` (its ``gandy`` folder's parent)."""
    for e in edits:
        path = root / "gandy" / e.file
        if e.anchor is None:
            assert not path.exists(), f"{e.file} exists already"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(e.text)
            continue
        src = path.read_text()
        assert src.count(e.anchor) == 1, f"{e.file}: the anchor {e.anchor!r} occurs {src.count(e.anchor)} times"
        new = {"after": e.anchor + e.text, "before": e.text + e.anchor, "replace": e.text}[e.where]
        path.write_text(src.replace(e.anchor, new))


def check(tmp: Path, edits: list[Edit], names: list[str]) -> dict:
    """Copy the package to ``tmp``, apply ``edits``, run the checks ``names`` in a fresh interpreter;
    ``{name: "ok" | why it failed}``."""
    root = tmp / "src"
    shutil.copytree(PACKAGE, root / "gandy", ignore=shutil.ignore_patterns("__pycache__"))
    apply(root, edits)
    work = tmp / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(root), "GANDY_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    prog = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_recipes; "
            f"test_recipes._main({names!r}, {str(work)!r}, {str(root / 'gandy')!r})")
    r = subprocess.run([sys.executable, "-c", prog], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith(TAG)), None)
    assert line is not None, f"no result (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return json.loads(line[len(TAG):])


def measured(name: str) -> tuple[int, int]:
    """(files touched, edits) of recipe ``name``."""
    edits = RECIPES[name]
    return len({e.file for e in edits}), len(edits)


def table_counts() -> dict[str, tuple[int, int]]:
    """docs/architecture.md's "Adding a new X" table: recipe -> (files, edits) as it states them."""
    text = DOC.read_text()
    section = text.split("## Adding a new X", 1)[1].split("\n## ", 1)[0]
    out = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")] if row.startswith("|") else []
        name = re.fullmatch(r"\*\*(.+?)\*\*.*", cells[0]) if cells else None
        if name:
            count = re.search(r"(\d+) files?, (\d+) edits?", cells[1])
            assert count, f"the row of {name.group(1)} states no count: {cells[1]!r}"
            out[name.group(1)] = (int(count.group(1)), int(count.group(2)))
    return out


# ----------------------------------------------------------------------------- the tests
def test_every_recipe_works_with_all_its_edits(tmp_path):
    """Sufficiency: every recipe's edits, applied together to one copy, give a working dummy."""
    every = [e for edits in RECIPES.values() for e in edits]
    results = check(tmp_path, every, list(RECIPES))
    failed = {k: v for k, v in results.items() if v != "ok"}
    assert not failed, failed


def test_the_table_states_the_measured_counts():
    """docs/architecture.md's table lists every recipe, each with the files and edits measured here."""
    stated = table_counts()
    assert set(stated) == set(RECIPES), (sorted(stated), sorted(RECIPES))
    wrong = {k: {"table": stated[k], "measured": measured(k)} for k in RECIPES if stated[k] != measured(k)}
    assert not wrong, wrong


def test_an_edit_that_misses_its_anchor_is_refused(tmp_path):
    shutil.copytree(PACKAGE / "core", tmp_path / "gandy" / "core", ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.raises(AssertionError, match="occurs 0 times"):
        apply(tmp_path, [Edit("core/objectives.py", "no such text", "x")])


def _sections(union) -> dict:
    """A config union's section classes by their ``name``."""
    from typing import get_args

    classes = get_args(get_args(union)[0])
    return {get_args(c.model_fields["name"].annotation)[0]: c for c in classes}


def test_every_registry_entry_answers_for_its_sections_defaults():
    """Registry introspection beside the recipes: every critic's and generator's entry takes its
    config section's keys (at their defaults) and answers what the planner and the memory estimate
    ask; its ``size`` is one of those keys; every entry's engines are known ones, eager among them."""
    from gandy.core.nets import CRITICS, GENERATORS
    from gandy.core.objectives import ENGINES, PENALTIES
    from gandy.runs import config as C

    for registry, union in ((CRITICS, C.CriticConfig), (GENERATORS, C.GeneratorConfig)):
        sections = _sections(union)
        assert set(sections) == set(registry)
        for name, entry in registry.items():
            options = sections[name](name=name).model_dump(exclude={"name"})
            assert int(entry.units(3, **options)) > 0, name
            if hasattr(entry, "widths"):
                widths = entry.widths(**options)
                assert widths and all(int(w) > 0 for w in widths), name
            assert entry.size is None or entry.size in options, name
            assert "eager" in entry.engines and set(entry.engines) <= set(ENGINES), name
    for name, penalty in PENALTIES.items():
        assert "eager" in penalty.engines and set(penalty.engines) <= set(ENGINES), name


@pytest.mark.slow
@pytest.mark.parametrize("name,index", [(k, i) for k, edits in RECIPES.items() for i in range(len(edits))],
                         ids=[f"{k.replace(' ', '_')}-{i}" for k, edits in RECIPES.items() for i in range(len(edits))])
def test_every_edit_of_a_recipe_is_needed(tmp_path, name, index):
    """Necessity: the recipe without its edit ``index`` does not work (its check fails)."""
    edits = [e for i, e in enumerate(RECIPES[name]) if i != index]
    result = check(tmp_path, edits, [name])[name]
    print(f"{name} without edit {index}: {result}")  # why it fails (shown with -rP)
    assert result != "ok", f"{name} works without {RECIPES[name][index]}"
