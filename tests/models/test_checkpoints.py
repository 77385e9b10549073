"""Checkpoint import: official Video Swin key map (against the published key list), round trips,
first-layer adaptation, the authors' Swin and STLT files, strictness and safe reading."""
from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import save_file

from egodistill.config import ModelConfig
from egodistill.models import CheckpointError, build_model, load_official_checkpoint, read_state_dict
from egodistill.models.checkpoints import STLT_ROWS, official_swin_key, to_official_state_dict
from egodistill.models.stlt import STLT
from egodistill.models.swin import SWIN_PRESETS, VideoSwin

from conftest import FIXTURES  # tests/fixtures, inside the repository

SWIN_KEYS = FIXTURES / "video_swin"
OFFICIAL = json.loads((SWIN_KEYS / "official_swin_t_kinetics400_keys.json").read_text())
AUTHORS = json.loads((SWIN_KEYS / "authors_swinmodel_epic100_keys.json").read_text())


class _NotATensor:
    """A pickled object that weights_only loading must refuse."""


@functools.lru_cache
def official_relative_position_index(window: tuple[int, int, int]) -> torch.Tensor:
    """The Video Swin relative position index, written out from its definition: for tokens i, j
    of a window, the index of (d_i - d_j, h_i - h_j, w_i - w_j) in a (2Wd-1, 2Wh-1, 2Ww-1) grid."""
    wd, wh, ww = window
    coords = [(d, h, w) for d in range(wd) for h in range(wh) for w in range(ww)]
    index = torch.empty(len(coords), len(coords), dtype=torch.int64)
    for i, (d1, h1, w1) in enumerate(coords):
        for j, (d2, h2, w2) in enumerate(coords):
            index[i, j] = ((d1 - d2 + wd - 1) * (2 * wh - 1) + (h1 - h2 + wh - 1)) * (2 * ww - 1) + (w1 - w2 + ww - 1)
    return index


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with every key, shape and dtype of the official Swin-T file, random values
    (the true relative position index, which is a function of the window)."""
    g = torch.Generator().manual_seed(seed)
    return dict(_random_official(seed))  # a fresh dict (tests add and remove keys); shared tensors


@functools.lru_cache
def _random_official(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    index = official_relative_position_index((8, 7, 7))
    out = {}
    for entry in OFFICIAL["keys"]:
        if entry["dtype"] == "int64":
            assert entry["kind"] == "buffer" and entry["name"].endswith("relative_position_index")
            out[entry["name"]] = index.clone()
        else:
            out[entry["name"]] = torch.randn(entry["shape"], generator=g) * 0.05
    return out


def _swin_t(heads, in_channels=3) -> VideoSwin:
    return build_model(ModelConfig(arch="swin_t", drop_path=0.0), heads, in_channels).eval()


# Swin-T takes seconds to build: the tests share a few (every load overwrites all their weights).
@pytest.fixture(scope="module")
def swin_t() -> VideoSwin:
    return _swin_t({"kinetics400": 400})


@pytest.fixture(scope="module")
def swin_t_other() -> VideoSwin:
    return _swin_t({"kinetics400": 400})


@pytest.fixture(scope="module")
def swin_t_epic() -> VideoSwin:
    return _swin_t({"verb": 97, "noun": 300})


def test_every_official_key_maps_to_exactly_one_of_ours_with_the_same_shape(swin_t):
    ours = swin_t.state_dict()
    assert len(OFFICIAL["keys"]) == OFFICIAL["n_keys"] == len(ours)
    targets = {}
    for entry in OFFICIAL["keys"]:
        name = entry["name"]
        target = official_swin_key(name) or name.replace("cls_head.fc_cls.", "head.kinetics400.")
        assert target in ours, f"{name} -> {target} is not a key of ours"
        assert list(ours[target].shape) == entry["shape"], name
        assert str(ours[target].dtype) == f"torch.{entry['dtype']}", name
        targets[name] = target
    assert len(set(targets.values())) == len(targets) == len(ours)  # one to one, covering ours
    # The spot checks that matter: MLP layers, patch merging, last norm.
    assert targets["backbone.layers.2.blocks.5.mlp.fc2.weight"] == "backbone.features.4.5.mlp.3.weight"
    assert targets["backbone.layers.1.downsample.reduction.weight"] == "backbone.features.3.reduction.weight"
    assert targets["backbone.norm.bias"] == "backbone.norm.bias"
    assert sum(p.numel() for p in swin_t.parameters()) == OFFICIAL["n_params"]


def test_relative_position_index_is_the_official_one(swin_t):
    expected = official_relative_position_index((8, 7, 7))
    for name, buf in swin_t.named_buffers():
        if name.endswith("relative_position_index"):
            assert torch.equal(buf, expected), name


def test_official_file_loads_strictly_and_round_trips(tmp_path, swin_t, swin_t_other):
    official = random_official_state_dict()
    path = tmp_path / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    torch.save({"meta": {"epoch": 30, "config": "model = dict(...)", "CLASSES": ["a", "b"]}, "state_dict": official}, path)

    report = load_official_checkpoint(swin_t, path)
    assert report.format == "official" and report.ok
    assert len(report.loaded) == 185 - 12 and len(report.ignored_buffers) == 12
    assert not (report.missing or report.unexpected or report.new_heads or report.skipped or report.adapted)
    assert "ignored buffers" in str(report) and str(path) in str(report)
    # Values went where the map says.
    sd = swin_t.state_dict()
    torch.testing.assert_close(sd["backbone.features.2.1.attn.relative_position_bias_table"],
                               official["backbone.layers.1.blocks.1.attn.relative_position_bias_table"])
    torch.testing.assert_close(sd["head.kinetics400.weight"], official["cls_head.fc_cls.weight"])
    # Back to the official names: the same tensors.
    back = to_official_state_dict(swin_t)
    assert set(back) == set(official)
    for k in official:
        assert torch.equal(back[k], official[k]), k

    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = swin_t(x)["kinetics400"]
    # Our own format (a run's model.safetensors) into a fresh model: identical outputs.
    save_file(swin_t.state_dict(), str(tmp_path / "model.safetensors"))
    fresh = swin_t_other
    torch.nn.init.zeros_(fresh.backbone.norm.weight)
    report = load_official_checkpoint(fresh, tmp_path / "model.safetensors")
    assert report.format == "egodistill" and report.ok
    with torch.no_grad():
        assert torch.equal(fresh(x)["kinetics400"], ref)
    # And the official dict, loaded again from memory: identical too.
    torch.nn.init.zeros_(fresh.backbone.norm.weight)
    load_official_checkpoint(fresh, official)
    with torch.no_grad():
        assert torch.equal(fresh(x)["kinetics400"], ref)


def test_first_layer_is_adapted_for_two_channel_flow():
    official = random_official_state_dict()
    model = _swin_t({"verb": 97, "noun": 300}, in_channels=2)
    report = load_official_checkpoint(model, official)
    rgb = official["backbone.patch_embed.proj.weight"]  # [96, 3, 2, 4, 4]
    got = model.backbone.patch_embed.proj.weight
    assert got.shape == (96, 2, 2, 4, 4)
    for c in range(2):
        torch.testing.assert_close(got[:, c], rgb.mean(dim=1))
    assert any("patch_embed.proj.weight" in a and "3 input channels -> 2" in a for a in report.adapted)
    # Kinetics classes are not ours: the classifier is skipped and our heads start fresh.
    assert report.ok and len(report.skipped) == 2 and sorted(report.new_heads) == [
        "head.noun.bias", "head.noun.weight", "head.verb.bias", "head.verb.weight"]


def test_authors_swin_checkpoint_loads_heads_by_name(tmp_path, swin_t_epic):
    official = random_official_state_dict()
    g = torch.Generator().manual_seed(4)
    authors = {}
    for entry in AUTHORS["keys"]:
        name = entry["name"]
        value = official[name] if name in official else torch.randn(entry["shape"], generator=g)
        authors["_orig_mod." + name] = value  # saved from a torch.compile'd model
    path = tmp_path / "model_checkpoint.pt"
    torch.save(authors, path)
    model = swin_t_epic
    report = load_official_checkpoint(model, path)
    assert report.format == "authors" and report.ok and not report.new_heads and not report.skipped
    torch.testing.assert_close(model.head["verb"].weight, authors["_orig_mod.classifiers.VERB.weight"])
    torch.testing.assert_close(model.head["noun"].bias, authors["_orig_mod.classifiers.NOUN.bias"])
    # An ACTION (Something-Something) file into a verb/noun model: classifier skipped, heads fresh.
    ssv2 = {k: v for k, v in official.items() if not k.startswith("cls_head.")}
    ssv2["classifiers.ACTION.weight"], ssv2["classifiers.ACTION.bias"] = torch.zeros(174, 768), torch.zeros(174)
    report = load_official_checkpoint(model, ssv2)
    assert report.skipped == ["classifiers.ACTION.weight [174, 768]", "classifiers.ACTION.bias [174]"]


def test_strict_loading_names_missing_and_unexpected_keys(swin_t_epic):
    official = random_official_state_dict()
    del official["backbone.layers.3.blocks.1.mlp.fc1.bias"]
    official["backbone.layers.4.blocks.0.norm1.weight"] = torch.ones(768)
    model = swin_t_epic
    torch.nn.init.zeros_(model.backbone.norm.weight)
    before = model.backbone.norm.weight.clone()
    with pytest.raises(CheckpointError) as err:
        load_official_checkpoint(model, official)
    msg = str(err.value)
    assert "backbone.features.6.1.mlp.0.bias" in msg and "backbone.layers.4.blocks.0.norm1.weight" in msg
    assert torch.equal(model.backbone.norm.weight, before)  # nothing loaded on failure
    report = load_official_checkpoint(model, official, strict=False)
    assert report.missing == ["backbone.features.6.1.mlp.0.bias"]
    assert report.unexpected == ["backbone.layers.4.blocks.0.norm1.weight"]
    torch.testing.assert_close(model.backbone.norm.weight, official["backbone.norm.weight"])


def test_shape_mismatch_and_wrong_window_are_reported(swin_t_epic):
    official = random_official_state_dict()
    official["backbone.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(392, 392, dtype=torch.int64)
    with pytest.raises(CheckpointError, match="relative position index differs"):
        load_official_checkpoint(swin_t_epic, official)
    tiny = VideoSwin({"verb": 3}, 3, **SWIN_PRESETS["swin_nano"])
    report = load_official_checkpoint(tiny, random_official_state_dict(), strict=False)
    assert report.mismatched and not report.ok
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_official_checkpoint(tiny, random_official_state_dict())


def test_unsafe_pickles_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"meta": _NotATensor(), "state_dict": {"a": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth.*weights_only"):
        read_state_dict(path)
    torch.save({"state_dict": {"a": torch.zeros(1), "b": [1, 2]}}, tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth.*'b'.*expected a tensor"):
        read_state_dict(tmp_path / "list.pth")
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"cut\.pth: not a readable torch checkpoint"):
        read_state_dict(tmp_path / "cut.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_state_dict(tmp_path / "nope.pth")
    # DDP and torch.compile prefixes are removed.
    assert list(read_state_dict({"module._orig_mod.x": torch.zeros(1)})) == ["x"]


def _authors_stlt_state_dict(model: STLT, positions: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values under the authors' Stlt names (hand_models.py), shapes for `model`'s size."""
    g = torch.Generator().manual_seed(seed)
    d = model.feature_dim
    emb = "temporal_transformer.layout_embedding.category_box_embeddings."
    shapes = {
        emb + "category_embeddings.weight": (3, d), emb + "box_embedding.weight": (d, 4), emb + "box_embedding.bias": (d,),
        emb + "score_embedding.weight": (d, 1), emb + "score_embedding.bias": (d,),
        emb + "side_embedding.weight": (3, d), emb + "state_embedding.weight": (6, d),
        emb + "layer_norm.weight": (d,), emb + "layer_norm.bias": (d,),
        "temporal_transformer.layout_embedding.cls_token": (1, 1, d),
        "temporal_transformer.position_embeddings.weight": (positions, d),
        "temporal_transformer.layer_norm.weight": (d,), "temporal_transformer.layer_norm.bias": (d,),
        "temporal_transformer.cls_token": (1, 1, d),
    }
    # nn.TransformerEncoder parameter names are the same in both (layers.<i>.self_attn.in_proj_weight, ...).
    for ours, theirs in (("frame_encoder.", "temporal_transformer.layout_embedding.transformer."),
                         ("temporal_encoder.", "temporal_transformer.transformer.")):
        for k, v in model.state_dict().items():
            if k.startswith(ours):
                shapes[theirs + k[len(ours):]] = tuple(v.shape)
    for head, classes in model.heads.items():
        shapes[f"classifiers.{head.upper()}.weight"], shapes[f"classifiers.{head.upper()}.bias"] = (classes, d), (classes,)
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def test_authors_stlt_loads_with_our_index_conventions():
    torch.manual_seed(0)
    model = STLT({"action": 174}, hidden=32, num_heads=4, frame_layers=2, temporal_layers=1, max_frames=8).eval()
    theirs = _authors_stlt_state_dict(model, positions=16)
    report = load_official_checkpoint(model, theirs)
    assert report.format == "authors_stlt" and report.ok and not report.new_heads
    assert any(a.startswith("position.weight: 16 positions") for a in report.adapted)
    assert len([a for a in report.adapted if "re-ordered" in a]) == len(STLT_ROWS)
    emb = "temporal_transformer.layout_embedding.category_box_embeddings."
    cat, side, state = (theirs[emb + n] for n in ("category_embeddings.weight", "side_embedding.weight", "state_embedding.weight"))
    # Theirs: category pad 0 / object 1 / hand 2, side none 0 / left 1 / right 2, state none 0 / HandState+1.
    torch.testing.assert_close(model.embed.category.weight, cat[[0, 2, 1]])
    torch.testing.assert_close(model.embed.side.weight[0], side[1])  # left
    torch.testing.assert_close(model.embed.side.weight[2], side[0])  # none
    torch.testing.assert_close(model.embed.state.weight[3], state[4])  # HandState 3
    torch.testing.assert_close(model.embed.state.weight[5], state[0])  # none
    torch.testing.assert_close(model.position.weight, theirs["temporal_transformer.position_embeddings.weight"][:8])
    torch.testing.assert_close(model.head["action"].weight, theirs["classifiers.ACTION.weight"])
    torch.testing.assert_close(model.frame_encoder.layers[1].linear2.weight,
                               theirs["temporal_transformer.layout_embedding.transformer.layers.1.linear2.weight"])
    # A right hand in contact state 4 (our indices) embeds as theirs does with their indices.
    ours_sum = model.embed.category.weight[1] + model.embed.side.weight[1] + model.embed.state.weight[4]
    torch.testing.assert_close(ours_sum, cat[2] + side[2] + state[5])


def test_checkpoint_of_the_other_architecture_is_refused():
    model = STLT({"action": 5}, hidden=32, num_heads=4, frame_layers=1, temporal_layers=1, max_frames=4)
    with pytest.raises(CheckpointError, match=r"Video Swin \(official\) checkpoint cannot initialise a STLT model"):
        load_official_checkpoint(model, random_official_state_dict())
    with pytest.raises(CheckpointError, match=r"STLT \(the authors'\) checkpoint cannot initialise a VideoSwin"):
        load_official_checkpoint(VideoSwin({"a": 2}, 3, **SWIN_PRESETS["swin_nano"]), _authors_stlt_state_dict(model, 4))


def test_build_model_loads_pretrained(tmp_path, capsys):
    cfg = ModelConfig(arch="swin_nano", drop_path=0.0)
    src = build_model(cfg, {"verb": 4}, 2)
    save_file(src.state_dict(), str(tmp_path / "model.safetensors"))
    cfg.pretrained = str(tmp_path / "model.safetensors")
    model = build_model(cfg, {"verb": 4}, 2)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert "model.safetensors (egodistill)" in capsys.readouterr().out
