"""Typed config: YAML loading, dotted overrides, strict validation, save/load round trip."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from egodistill.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    resolve_path,
    save_config,
)


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# defaults and YAML files
# --------------------------------------------------------------------------------------------


def test_defaults_equal_dataclass_defaults():
    assert load_config(None) == Config()
    assert config_from_dict({}) == Config()
    assert config_from_dict(None) == Config()


def test_yaml_file_sets_nested_values_and_keeps_other_defaults(tmp_path):
    path = write(
        tmp_path,
        """
name: rgb_teacher
data:
  reader: ssv2
  num_frames: 8
  scale_range: [1.0, 1.25]
  files: {train: a.json, labels: l.json}
  audio:
    n_mels: 64
optim:
  lr: 3e-4          # exponent without a dot is a float (YAML 1.2)
  weight_decay: 1   # int accepted for a float
train:
  precision: no     # the string 'no', not YAML 1.1's False
  head_weights: {verb: 1, noun: 0.5}
""",
    )
    cfg = load_config(path)
    assert cfg.name == "rgb_teacher"
    assert cfg.data.reader == "ssv2" and cfg.data.num_frames == 8
    assert cfg.data.scale_range == [1.0, 1.25]
    assert cfg.data.files == {"train": "a.json", "labels": "l.json"}
    assert cfg.data.audio.n_mels == 64 and cfg.data.audio.n_fft == 1024  # sibling default kept
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.weight_decay == 1.0 and isinstance(cfg.optim.weight_decay, float)
    assert cfg.train.precision == "no"
    assert cfg.train.head_weights == {"verb": 1.0, "noun": 0.5}
    assert cfg.data.size == 224 and cfg.model == Config().model


def test_empty_file_and_empty_section_mean_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    cfg = load_config(write(tmp_path, "data:\n  # all commented out\noptim:\n  lr: 0.5\n"), ["data.size=112"])
    assert cfg.data.size == 112 and cfg.optim.lr == 0.5
    assert load_config(write(tmp_path, "data:\n")).data == Config().data


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"c\.yaml: the top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


# --------------------------------------------------------------------------------------------
# unknown keys
# --------------------------------------------------------------------------------------------


def test_unknown_key_suggests_closest_and_lists_valid(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "optim:\n  lrr: 0.1\n"))
    msg = str(e.value)
    assert "c.yaml" in msg and "unknown config key 'optim.lrr'" in msg
    assert "did you mean 'optim.lr'" in msg
    assert "valid keys here are: lr, weight_decay, betas, warmup_epochs, grad_clip" in msg


def test_unknown_top_level_section_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer': did you mean 'optim'\?"):
        load_config(None, ["optimizer.lr=0.1"])


def test_unknown_nested_key_via_override():
    with pytest.raises(ConfigError, match=r"unknown config key 'data.audio.nmels': did you mean 'data.audio.n_mels'"):
        load_config(None, ["data.audio.nmels=64"])


def test_unknown_key_without_close_match_lists_all():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["distill.zzzzzz=1"])
    assert "did you mean" not in str(e.value)
    assert "valid keys here are: teachers, weighting, tau, temperature" in str(e.value)


# --------------------------------------------------------------------------------------------
# wrong types and Literal choices
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=2.5", "config key 'train.epochs' must be an int, got 2.5"),
        ("train.epochs=true", "config key 'train.epochs' must be an int, got True"),
        ("optim.lr=fast", "config key 'optim.lr' must be a float, got 'fast'"),
        ("optim.lr=true", "config key 'optim.lr' must be a float, got True"),
        ("data.hflip=1", "config key 'data.hflip' must be true or false, got 1"),
        ("data.hflip=yes", "config key 'data.hflip' must be true or false, got 'yes'"),
        ("data.scale_range=1.2", "config key 'data.scale_range' must be a list"),
        ("data.scale_range=[1.0, big]", r"config key 'data.scale_range\[1\]' must be a float, got 'big'"),
        ("data.files=[a, b]", "config key 'data.files' must be a mapping"),
        ("train.head_weights.verb=heavy", "config key 'train.head_weights.verb' must be a float, got 'heavy'"),
        ("data.audio=3", "config key 'data.audio' must be a mapping of AudioConfig fields, got 3"),
        ("data.audio.filterbank_rate=16k", "config key 'data.audio.filterbank_rate' must be int | NoneType, got '16k'"),
        ("name=none", None),  # a str key keeps the text verbatim: the run is called "none"
    ],
)
def test_wrong_types_name_the_key(override, message):
    if message is None:
        assert load_config(None, [override]).name == "none"
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize(
    "key, good, bad",
    [
        ("train.precision", ["no", "fp16", "bf16"], "fp32"),
        ("data.sampler", ["dense", "uniform"], "random"),
        ("distill.weighting", ["uniform", "per-sample", "dataset"], "mean"),
        ("data.label_ids", ["sorted", "file"], "ssv2"),
    ],
)
def test_literal_choices(key, good, bad):
    section, field = key.split(".")
    for value in good:
        cfg = load_config(None, [f"{key}={value}"])
        assert getattr(getattr(cfg, section), field) == value
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}={bad}"])
    assert f"config key '{key}' must be one of" in str(e.value)
    for value in good:
        assert repr(value) in str(e.value)  # the message lists every valid choice


def test_literal_from_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: config key 'data.sampler' must be one of 'dense' \| 'uniform', got 'dens'"):
        load_config(write(tmp_path, "data:\n  sampler: dens\n"))


# --------------------------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------------------------


def test_override_values_parse_by_schema():
    cfg = load_config(
        None,
        [
            "optim.lr=3e-4",
            "optim.warmup_epochs=1",  # int -> float
            "optim.betas=[0.8, 9.9e-1]",
            "train.epochs=7",
            "train.precision=no",
            "data.hflip=false",
            "data.audio.filterbank_rate=16000",
            "data.audio.mean=-1.5E+1",
            "name=001",  # str key: stays the text "001"
            "run_dir=runs/2024",
            "data.files.train=2024",
            "data.files.labels=labels.json",
            "model.heads={verb: 97, noun: 300}",
            "distill.teachers=[runs/rgb, runs/flow]",
        ],
    )
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.warmup_epochs == 1.0 and isinstance(cfg.optim.warmup_epochs, float)
    assert cfg.optim.betas == [0.8, 0.99]
    assert cfg.train.epochs == 7 and cfg.train.precision == "no" and cfg.data.hflip is False
    assert cfg.data.audio.filterbank_rate == 16000 and cfg.data.audio.mean == -15.0
    assert cfg.name == "001" and cfg.run_dir == "runs/2024"
    assert cfg.data.files == {"train": "2024", "labels": "labels.json"}
    assert cfg.model.heads == {"verb": 97, "noun": 300}
    assert cfg.distill.teachers == ["runs/rgb", "runs/flow"]


def test_override_none_and_optional():
    cfg = load_config(None, ["data.audio.filterbank_rate=16000"])
    assert cfg.data.audio.filterbank_rate == 16000
    for text in ("none", "None", "null", "~"):
        assert load_config(None, [f"data.audio.filterbank_rate={text}"]).data.audio.filterbank_rate is None
    with pytest.raises(ConfigError, match="'optim.lr' must be a float, got None"):
        load_config(None, ["optim.lr=none"])


def test_override_beats_file_and_later_override_wins(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 0.1\ntrain:\n  epochs: 3\n")
    cfg = load_config(path, ["optim.lr=0.2", "optim.lr=0.3"])
    assert cfg.optim.lr == 0.3 and cfg.train.epochs == 3


def test_override_quoted_text_is_unquoted():
    assert load_config(None, ["name='my run'"]).name == "my run"
    assert load_config(None, ['name="3e-4"']).name == "3e-4"


def test_override_value_may_contain_equals():
    assert load_config(None, ["data.files.train=a=b.csv"]).data.files["train"] == "a=b.csv"


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match=r"override 'optim.lr' must look like key.sub=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match=r"override 'optim.betas=\[0.1,': the value is not valid YAML"):
        load_config(None, ["optim.betas=[0.1,"])
    with pytest.raises(ConfigError, match=r"override 'optim.lr.x=1': 'lr' is not a section"):
        apply_overrides({"optim": {"lr": 0.1}}, ["optim.lr.x=1"])


def test_apply_overrides_modifies_tree_in_place():
    tree = {"optim": {"lr": 0.1}}
    out = apply_overrides(tree, ["optim.betas=[0.1, 0.2]", "data.audio.n_mels=40"])
    assert out is tree
    assert tree == {"optim": {"lr": 0.1, "betas": [0.1, 0.2]}, "data": {"audio": {"n_mels": 40}}}


# --------------------------------------------------------------------------------------------
# save / load round trip
# --------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        None,
        [
            "name=3e-4", "train.precision=no", "optim.lr=3e-4", "data.audio.filterbank_rate=none",
            "data.files.train=train.csv", "model.heads={verb: 97}", "distill.teachers=[runs/a]",
            "train.head_weights.verb=0.5", "data.reader=something_else", "data.label_ids=file",
        ],
    )
    path = tmp_path / "run" / "config.yaml"
    path.parent.mkdir()
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]  # no temp file left
    # Readable by plain YAML 1.1 too, with the same values (ambiguous strings are quoted).
    plain = yaml.safe_load(path.read_text())
    assert plain == config_to_dict(cfg)
    assert plain["train"]["precision"] == "no" and plain["name"] == "3e-4"


def test_save_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old: content\n")
    save_config(Config(name="new"), path)
    assert load_config(path).name == "new"


def test_config_to_dict_is_plain():
    tree = config_to_dict(Config())
    assert tree["data"]["audio"]["n_mels"] == 128
    assert config_from_dict(tree) == Config()
    assert set(tree) == {f.name for f in dataclasses.fields(Config)}


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(min_value=1e-8, max_value=10.0, allow_nan=False),
    epochs=st.integers(min_value=1, max_value=10_000),  # values within range (check_values)
    name=st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=12),
    betas=st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=2, max_size=2),
)
def test_round_trip_property(tmp_path_factory, lr, epochs, name, betas):
    cfg = Config(name=name)
    cfg.optim.lr, cfg.train.epochs, cfg.optim.betas = lr, epochs, betas
    path = tmp_path_factory.mktemp("rt") / "config.yaml"
    save_config(cfg, path)
    back = load_config(path)
    assert back == cfg
    assert math.isclose(back.optim.lr, lr)


# --------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------


def test_resolve_path(tmp_path):
    cfg = load_config(None, [f"data.root={tmp_path}"])
    assert resolve_path(cfg, "a/b.csv") == tmp_path / "a" / "b.csv"
    assert resolve_path(cfg, "/abs/c.csv") == Path("/abs/c.csv")
    assert resolve_path(Config(), "a/b.csv") == Path("a/b.csv")  # empty root: as given


def test_model_arch_is_any_registered_architecture_and_an_unknown_one_names_the_closest():
    from egodistill.models import list_models

    for arch in ("swin_t", "cnn3d_micro", "r3d_18"):
        assert load_config(None, [f"model.arch={arch}"]).model.arch == arch
    assert load_config(None, ["model.arch=stlt_nano", "model.modality=layout"]).model.arch == "stlt_nano"
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.arch=cnn3d_mikro"])
    assert "unknown model.arch 'cnn3d_mikro'" in str(e.value) and "did you mean 'cnn3d_micro'" in str(e.value)
    assert all(name in str(e.value) for name in list_models())


def test_older_configs_with_a_family_and_a_preset_read_as_the_preset():
    assert load_config(None, ["model.arch=swin", "model.preset=swin_nano"]).model.arch == "swin_nano"
    assert load_config(None, ["model.arch=stlt", "model.preset=stlt_nano", "model.modality=layout"]).model.arch == "stlt_nano"
    with pytest.raises(ConfigError, match="model.arch=swin_nano"):
        load_config(None, ["model.arch=cnn3d_nano", "model.preset=swin_nano"])


def test_an_architecture_that_cannot_read_the_modality_fails_at_load():
    with pytest.raises(ConfigError, match=r"model.arch 'stlt_nano' reads layout, but model.modality 'rgb' gives clips"):
        load_config(None, ["model.arch=stlt_nano", "model.modality=rgb"])
    with pytest.raises(ConfigError, match=r"architectures for layout: layout_tcn_nano, layout_tcn_small, stlt, stlt_nano, stlt_small"):
        load_config(None, ["model.arch=cnn3d_nano", "model.modality=layout"])
    assert load_config(None, ["model.arch=stlt_nano", "model.modality=layout"]).model.arch == "stlt_nano"
