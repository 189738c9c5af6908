"""Config loading, dotted overrides and validation (gandy.runs.config), plus the build-time checks
that validate a config against itself (dimensions, kernel matrices, data files)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import gandy
from gandy.runs.build import build
from gandy.runs.config import Config, ConfigError, apply_overrides, dump_config, load_config

from datafiles import write_data_file


def _err(source=None, overrides=None) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_config(source, overrides)
    return ei.value


def _build_err(cfg: dict, overrides=None) -> ConfigError:
    """A config that validates on its own but fails when built (before anything runs)."""
    cfg = load_config(cfg, overrides)
    with pytest.raises(ConfigError) as ei:
        build(cfg)
    return ei.value


# ----------------------------------------------------------------------------- loading
def test_defaults_and_sources_agree(tiny_cfg, tiny_yaml):
    assert isinstance(load_config(), Config)
    from_dict = load_config(tiny_cfg)
    from_path = load_config(tiny_yaml)
    from_str = load_config(str(tiny_yaml))
    from_cfg = load_config(from_dict)
    assert from_dict == from_path == from_str == from_cfg
    assert from_dict.particles.n == 16 and from_dict.critic.widths == [32]
    assert gandy.load_config is load_config and gandy.ConfigError is ConfigError
    assert issubclass(ConfigError, ValueError)


def test_loading_does_not_mutate_input(tiny_cfg):
    import copy

    before = copy.deepcopy(tiny_cfg)
    load_config(tiny_cfg, ["kernel.g2=0.5", "target={name: ring8}"])
    assert tiny_cfg == before


def test_dump_config_is_fully_resolved_and_round_trips(tiny_cfg):
    cfg = load_config(tiny_cfg, ["kernel.g2=0.5"])
    data = yaml.safe_load(dump_config(cfg))
    # every top-level field is written out, including the ones the user never set
    assert set(data) == set(Config.model_fields)
    assert data["phase"]["window"] == cfg.phase.window
    assert data["kernel"] == {"name": "two_number", "g1": 1.0, "g2": 0.5}
    assert load_config(data) == cfg


def test_file_errors_name_config(tmp_path):
    assert _err(tmp_path / "missing.yaml").field == "config"
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: [unclosed\n")
    assert _err(bad).field == "config"
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    assert _err(lst).field == "config"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == load_config()


# ----------------------------------------------------------------------------- overrides
def test_dotted_override_changes_resolved_config(tiny_cfg):
    base = load_config(tiny_cfg)
    cfg = load_config(tiny_cfg, ["kernel.g2=0.5", "optim.critic.lr=1e-3", "seeds=[3, 4, 5]"])
    assert cfg.kernel.g2 == 0.5 and cfg.kernel.g1 == base.kernel.g1
    assert cfg.optim.critic.lr == pytest.approx(1e-3)  # "1e-3" is a YAML string; still a float here
    assert cfg.seeds == [3, 4, 5]
    # everything else is untouched
    assert cfg.model_copy(update={"kernel": base.kernel, "optim": base.optim, "seeds": base.seeds}) == base


def test_override_on_a_config_object(tiny_cfg):
    cfg = load_config(tiny_cfg)
    assert load_config(cfg, ["steps=7"]).steps == 7
    assert cfg.steps == 60  # frozen, unchanged


def test_override_replaces_a_section(tiny_cfg):
    cfg = load_config(tiny_cfg, ["target={name: ring8}"])
    assert cfg.target.name == "ring8"
    assert cfg.target.radius == 2.0  # the new kind's defaults, no fields leaking from two_modes_1d
    cfg = load_config(tiny_cfg, ["target={name: ring8, radius: 3.5}"])
    assert cfg.target.radius == 3.5


def test_yaml_section_with_new_name_is_replaced_whole():
    # two_modes_1d (the default target) has `separation`; ring8 does not accept it
    cfg = load_config({"target": {"name": "ring8"}})
    assert cfg.target.name == "ring8"
    # same name: merged over the defaults
    cfg = load_config({"target": {"name": "two_modes_1d", "separation": 6.0}})
    assert cfg.target.separation == 6.0 and cfg.target.std == 0.1


@pytest.mark.parametrize("bad", ["kernel.g2", "kernel.g2 0.5", "", "=3"])
def test_malformed_override_is_a_config_error(tiny_cfg, bad):
    with pytest.raises(ConfigError):
        load_config(tiny_cfg, [bad])
    with pytest.raises(ConfigError):
        apply_overrides({}, [bad])


def test_override_into_a_scalar_and_unparsable_value(tiny_cfg):
    e = _err(tiny_cfg, ["kernel.g2.x=1"])
    assert e.field == "kernel.g2.x"
    e = _err(tiny_cfg, ["kernel.g2=[1"])
    assert e.field == "kernel.g2"


def test_unknown_key_is_named(tiny_cfg):
    e = _err(tiny_cfg, ["kernel.g3=1"])
    assert e.field == "kernel.g3"
    assert "unknown key" in str(e)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "override, field, valid",
    [
        ("target={name: bogus}", "target", ["gaussian_mixture", "point_mass", "two_modes_1d", "ring8", "grid25", "empirical", "mnist"]),
        ("target.name=bogus", "target", ["two_modes_1d", "ring8", "grid25"]),
        ("critic.name=bogus", "critic", ["mlp", "rbf", "random_features", "linear"]),
        ("kernel={name: bogus}", "kernel", ["two_number", "ntk", "empirical_ntk", "matrix"]),
        ("particles.init={name: bogus}", "particles.init", ["gaussian", "uniform"]),
        ("objective=bogus", "objective", ["ipm", "mm", "ns", "ls", "hinge"]),
        ("penalty.name=bogus", "penalty.name", ["none", "sobolev", "wgan_gp", "r1", "r2", "dragan"]),
        ("optim.critic.name=bogus", "optim.critic.name", ["sgd", "adam"]),
    ],
)
def test_unknown_name_lists_the_valid_ones(tiny_cfg, override, field, valid):
    e = _err(tiny_cfg, [override])
    assert e.field == field
    msg = str(e)
    for name in valid:
        assert name in msg


@pytest.mark.parametrize(
    "override, field",
    [
        ("particles.n=abc", "particles.n"),
        ("steps=1.5", "steps"),
        ("steps=many", "steps"),
        ("seeds=[a]", "seeds"),
        ("seeds=5", "seeds"),
        ("optim.generator.lr=abc", "optim.generator.lr"),
        ("critic.widths=[a]", "critic.widths"),
        ("kernel.g1=[1, 2]", "kernel.g1"),
    ],
)
def test_wrong_types_name_the_field(tiny_cfg, override, field):
    e = _err(tiny_cfg, [override])
    assert e.field.startswith(field)
    assert field in str(e)


def test_boolean_is_not_an_int(tiny_cfg):
    e = _err(tiny_cfg, ["steps=true"])
    assert e.field == "steps"


@pytest.mark.parametrize(
    "override, field",
    [
        ("optim.generator.lr=-1", "optim.generator.lr"),
        ("optim.generator.lr=0", "optim.generator.lr"),
        ("optim.critic.lr=-0.1", "optim.critic.lr"),
        ("optim.critic.weight_decay=-1", "optim.critic.weight_decay"),
        ("penalty.weight=-1", "penalty.weight"),
        ("kernel.g1=0", "kernel.g1"),
        ("particles.init.std=-1", "particles.init.std"),
        ("particles.n=0", "particles.n"),
        ("target.std=-0.1", "target.std"),
        ("log_every=0", "log_every"),
        ("steps=-1", "steps"),
    ],
)
def test_negative_or_zero_rates_are_rejected(tiny_cfg, override, field):
    e = _err(tiny_cfg, [override])
    assert e.field == field
    assert field in str(e)


def test_g2_above_g1_is_rejected(tiny_cfg):
    e = _err(tiny_cfg, ["kernel.g2=1.5"])
    assert e.field.startswith("kernel")
    assert "g2" in str(e) and "g1" in str(e)
    # g2 == g1 is the edge of PSD and allowed
    assert load_config(tiny_cfg, ["kernel.g2=1.0"]).kernel.g2 == 1.0


@pytest.mark.parametrize(
    "override, field",
    [
        ("seeds=[0, 0]", "seeds"),
        ("seeds=[]", "seeds"),
        ("target={name: gaussian_mixture, means: [[0.0], [.nan]]}", "target.means"),
        ("target={name: gaussian_mixture, means: [[0.0], [1.0, 2.0]]}", "target.means"),
        ("target={name: gaussian_mixture, means: [[0.0], [1.0]], weights: [1.0]}", "target"),
        ("particles.init={name: uniform, low: [1.0], high: [0.0]}", "particles.init"),
        ("kernel={name: matrix}", "kernel"),
    ],
)
def test_inconsistent_values_are_rejected(tiny_cfg, override, field):
    assert _err(tiny_cfg, [override]).field == field


def test_field_is_named_once(tiny_cfg):
    e = _err(tiny_cfg, ["particles.n=abc"])
    assert str(e).count("particles.n") == 1


# ----------------------------------------------------------------------------- build-time checks
def test_dimension_mismatch_between_target_and_init(tiny_cfg):
    e = _build_err(tiny_cfg, ["particles.init.mean=[0.0, 0.0]"])
    assert e.field == "particles.init"
    assert "dimension" in str(e)
    e = _build_err(tiny_cfg, ["target={name: ring8}"])  # 2-D target, 1-D init
    assert e.field == "particles.init"
    e = _build_err(tiny_cfg, ["particles.init={name: uniform, low: [0, 0, 0], high: [1, 1, 1]}"])
    assert e.field == "particles.init"


def test_two_number_kernel_not_psd_for_this_n(tiny_cfg):
    # g1 + (N - 1) g2 = 1 - 15 * 0.5 < 0 for N = 16
    e = _build_err(tiny_cfg, ["kernel.g2=-0.5"])
    assert e.field == "kernel.g2"
    assert "PSD" in str(e)


def _matrix(values) -> str:
    return "kernel=" + yaml.safe_dump({"name": "matrix", "values": values}, default_flow_style=True).strip()


@pytest.mark.parametrize(
    "values, words",
    [
        ((-np.eye(16)).tolist(), "semi-definite"),
        ((np.eye(16) + np.triu(np.ones((16, 16)), 1)).tolist(), "symmetric"),
        (np.eye(4).tolist(), "shape"),
    ],
)
def test_bad_kernel_matrix_values(tiny_cfg, values, words):
    e = _build_err(tiny_cfg, [_matrix(values)])
    assert e.field == "kernel.values"
    assert words in str(e)


def test_nan_in_kernel_matrix_is_refused_when_loading(tiny_cfg):
    with pytest.raises(ConfigError) as ei:
        load_config(tiny_cfg, [_matrix([[float("nan")] * 16] * 16)])
    assert ei.value.field == "kernel.values"
    assert "NaN" in str(ei.value) and "[0][0]" in str(ei.value)


def test_good_kernel_matrix_builds(tiny_cfg, tmp_path):
    build(load_config(tiny_cfg, [_matrix(np.eye(16).tolist())]))
    np.save(tmp_path / "k.npy", 0.5 * np.eye(16) + 0.1)
    build(load_config(tiny_cfg, [f"kernel={{name: matrix, path: {tmp_path / 'k.npy'}}}"]))


@pytest.mark.parametrize(
    "arr, words",
    [(-np.eye(16), "semi-definite"), (np.array(1.0), "shape"), (np.full((16, 16), np.inf), "NaN")],
)
def test_bad_kernel_matrix_file(tiny_cfg, tmp_path, arr, words):
    p = tmp_path / "k.npy"
    np.save(p, arr)
    e = _build_err(tiny_cfg, [f"kernel={{name: matrix, path: {p}}}"])
    assert e.field == "kernel.path"
    assert words in str(e)


def test_kernel_matrix_file_missing(tiny_cfg, tmp_path):
    e = _build_err(tiny_cfg, [f"kernel={{name: matrix, path: {tmp_path / 'nope.npy'}}}"])
    assert e.field == "kernel.path"


def test_kernel_matrix_file_non_numeric(tiny_cfg, tmp_path):
    p = tmp_path / "k.npy"
    np.save(p, np.array([["a"] * 16] * 16))
    e = _build_err(tiny_cfg, [f"kernel={{name: matrix, path: {p}}}"])
    assert e.field == "kernel.path"


# ----------------------------------------------------------------------------- data files
_write = write_data_file


def _empirical(path, extra: str = "") -> str:
    return f"target={{name: empirical, path: '{path}'{extra}}}"


BAD_DATA = ["nan", "inf", "scalar", "strings", "bool", "empty", "missing", "garbage", "truncated", "truncated_header", "npz_two"]
MALFORMED_NPZ = ["npz_object", "npz_corrupt_member"]


def test_good_data_file_builds(tiny_cfg, tmp_path):
    sim = build(load_config(tiny_cfg, [_empirical(_write(tmp_path, "good"))]))
    assert sim.d == 1 and sim.target.modes.shape == (4, 1)


@pytest.mark.parametrize("kind", BAD_DATA)
def test_bad_data_file_names_target_path(tiny_cfg, tmp_path, kind):
    e = _build_err(tiny_cfg, [_empirical(_write(tmp_path, kind))])
    assert e.field == "target.path"
    assert "target.path" in str(e)


@pytest.mark.parametrize("kind", MALFORMED_NPZ)
def test_bad_npz_names_target_path(tiny_cfg, tmp_path, kind):
    e = _build_err(tiny_cfg, [_empirical(_write(tmp_path, kind))])
    assert e.field == "target.path"


def test_data_dimension_mismatch_with_init(tiny_cfg, tmp_path):
    p = tmp_path / "d2.npy"
    np.save(p, np.ones((5, 2)))
    e = _build_err(tiny_cfg, [_empirical(p)])
    assert e.field == "particles.init"


@pytest.mark.parametrize("override, field, says", [
    ("critic.widht=[8]", "critic.widht", "unknown key; did you mean 'widths'?"),
    ("critc.widths=[8]", "critc", "unknown key; did you mean 'critic'?"),
    ("optim.critic.lrr=0.1", "optim.critic.lrr", "unknown key; did you mean 'lr'?"),
    ("critic.name=mpl", "critic", "did you mean 'mlp'?"),
])
def test_a_misspelt_key_or_name_gets_the_nearest_ones(override, field, says):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert e.value.field == field and e.value.message.endswith(says)


def test_a_key_like_no_other_gets_no_suggestion():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["zzzz=1"])
    assert e.value.message == "unknown key"
