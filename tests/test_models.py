"""Model factory (timm backbone + metadata branch + head), local pretrained weights, checkpoints."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

from lesionkit.errors import InputError, UsageError
from lesionkit.models.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)
from lesionkit.models.factory import LesionNet, ModelSpec, create_model, data_config
from lesionkit.train.optim import build_optimizer
from lesionkit.train.schedules import build_scheduler


def _spec(**kw) -> ModelSpec:
    base = {"name": "test_resnet", "num_outputs": 3, "img_size": 32}
    base.update(kw)
    return ModelSpec(**base)


def test_spec_round_trip_plain_types():
    s = _spec(meta_dim=5, meta_hidden=(512, 128), kwargs={"drop_path_rate": 0.0})
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON types only
    assert d["meta_hidden"] == [512, 128]
    assert ModelSpec.from_dict(d) == s
    with pytest.raises(InputError, match="unknown keys"):
        ModelSpec.from_dict({**d, "bogus": 1})
    with pytest.raises(UsageError):
        _spec(meta_dropout=1.5)


def test_unknown_model_lists_close_matches():
    with pytest.raises(UsageError) as ei:
        create_model(_spec(name="resnet10tt"))
    assert "resnet10t" in (ei.value.hint or "")


def test_forward_shapes_binary_and_multiclass():
    x = torch.randn(2, 3, 32, 32)
    m = create_model(_spec(num_outputs=1)).eval()
    assert m(x).shape == (2, 1)
    m = create_model(_spec(num_outputs=7)).eval()
    assert m(x).shape == (2, 7)
    assert m.meta_branch is None
    assert m.head.in_features == m.backbone.num_features


def test_meta_branch_structure_and_use():
    torch.manual_seed(0)
    m = create_model(_spec(meta_dim=6, meta_hidden=(512, 128), meta_dropout=0.3)).eval()
    kinds = [type(layer) for layer in m.meta_branch]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2
    assert m.meta_branch[0].in_features == 6 and m.meta_branch[0].out_features == 512
    assert m.meta_branch[4].out_features == 128
    assert m.head.in_features == m.backbone.num_features + 128
    x = torch.randn(3, 3, 32, 32)
    meta = torch.randn(3, 6)
    y1 = m(x, meta)
    y2 = m(x, meta + 1.0)
    assert not torch.allclose(y1, y2), "changing the metadata must change the output"
    assert torch.allclose(m(x, meta), y1)  # eval mode is deterministic
    with pytest.raises(ValueError, match="metadata"):
        m(x)
    with pytest.raises(ValueError, match="metadata"):
        m(x, torch.randn(3, 5))


def test_vit_img_size_passed_and_data_config():
    m = create_model(ModelSpec("test_vit", 2, 32)).eval()
    assert m.backbone.patch_embed.img_size == (32, 32)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    cfg = data_config(m)
    assert cfg["input_size"] == [3, 32, 32]
    assert cfg["mean"] == list(m.backbone.pretrained_cfg["mean"])
    assert json.loads(json.dumps(cfg)) == cfg


# ---- pretrained weights from a local file -----------------------------------------------------------------------

def test_pretrained_local_state_dict_is_applied(tmp_path):
    torch.manual_seed(1)
    src = timm.create_model("resnet10t", pretrained=False)  # with its 1000-class fc, like hub weights
    path = tmp_path / "resnet10t.pth"
    torch.save(src.state_dict(), path)
    spec = ModelSpec("resnet10t", 2, 32)
    m = create_model(spec, pretrained=path)
    fresh = create_model(spec)
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    assert not torch.equal(fresh.backbone.conv1[0].weight, m.backbone.conv1[0].weight)
    # wrapped in {"state_dict": ...} with DDP prefixes also loads
    path2 = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path2)
    m2 = create_model(spec, pretrained=path2)
    assert torch.equal(m2.backbone.conv1[0].weight, src.conv1[0].weight)
    # "none" means random init
    create_model(spec, pretrained="none")


def test_pretrained_vit_resamples_position_embedding(tmp_path):
    src = timm.create_model("test_vit", pretrained=False, img_size=64)
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)
    m = create_model(ModelSpec("test_vit", 2, 32), pretrained=path)
    assert torch.equal(m.backbone.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert m.backbone.pos_embed.shape != src.pos_embed.shape  # resampled by timm's checkpoint filter


def test_pretrained_missing_and_mismatching_files(tmp_path):
    spec = ModelSpec("resnet10t", 2, 32)
    with pytest.raises(InputError) as ei:
        create_model(spec, pretrained=tmp_path / "nope.pth")
    assert "not found" in ei.value.message
    assert "timm.create_model('resnet10t', pretrained=True)" in ei.value.hint
    assert "--pretrained" in ei.value.hint
    other = tmp_path / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), other)
    with pytest.raises(InputError) as ei:
        create_model(spec, pretrained=other)
    assert "do not match" in ei.value.message
    assert any("mismatch" in d or "missing" in d for d in ei.value.details)
    assert "pretrained=True" in ei.value.hint
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="cannot read"):
        create_model(spec, pretrained=junk)


# ---- checkpoints ------------------------------------------------------------------------------------------------

class _DDPLike(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *a):
        return self.module(*a)


class _CompiledLike(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self._orig_mod = module

    def forward(self, *a):
        return self._orig_mod(*a)


def _ckpt_kwargs(model, spec):
    return {
        "model": model, "spec": spec, "classes": ["a", "b", "c"], "target": {"name": "label", "kind": "multiclass"},
        "data_cfg": data_config(unwrap_model(model)), "meta_encoder": {"cols": ["age_approx"], "mean": np.float32(50.0)},
        "config": {"lr": 1e-3, "out": Path("/tmp/somewhere"), "sizes": (1, 2)}, "epoch": 2, "step": 40, "best_metric": 0.75,
    }


def test_checkpoint_weights_only_round_trip(tmp_path):
    torch.manual_seed(0)
    spec = _spec(meta_dim=4, meta_hidden=(16,))
    inner = create_model(spec)
    wrapped = _DDPLike(_CompiledLike(inner))
    assert set(wrapped.state_dict()) != set(inner.state_dict())  # prefixed keys
    opt = build_optimizer(inner, "sgd", 0.1, 1e-4)
    sched = build_scheduler(opt, "sgdr", steps_per_epoch=4, epochs=3)
    x, meta = torch.randn(4, 3, 32, 32), torch.randn(4, 4)
    inner.train()
    nn.functional.cross_entropy(inner(x, meta), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    sched.step()
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, **_ckpt_kwargs(wrapped, spec), optimizer=opt, scheduler=sched, scaler=scaler,
                    rng=rng_state(), extra={"arr": np.arange(3), "np_int": np.int64(5)})
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # atomic: no temp files left
    raw = torch.load(path, weights_only=True)
    assert all(not k.startswith(("module.", "_orig_mod.")) for k in raw["state_dict"])
    assert set(raw["state_dict"]) == set(inner.state_dict())
    assert raw["classes"] == ["a", "b", "c"] and raw["model_spec"] == spec.to_dict()
    assert raw["config"]["out"] == "/tmp/somewhere" and raw["config"]["sizes"] == [1, 2]
    assert raw["data_cfg"]["input_size"] == [3, 32, 32]
    ck = load_checkpoint(path)
    m2 = model_from_checkpoint(ck)
    assert not m2.training
    inner.eval()
    with torch.no_grad():
        assert torch.equal(m2(x, meta), inner(x, meta))
    # optimizer and schedule state resume
    opt2 = build_optimizer(m2, "sgd", 0.1, 1e-4)
    opt2.load_state_dict(ck["optimizer"])
    sched2 = build_scheduler(opt2, "sgdr", steps_per_epoch=4, epochs=3)
    sched2.load_state_dict(ck["scheduler"])
    assert sched2.step_count == 1 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_rng_state_round_trip():
    st = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(st)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="cannot read"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(InputError, match="not a lesionkit checkpoint"):
        load_checkpoint(foreign)


def test_lesionnet_accepts_external_backbone():
    bb = timm.create_model("test_resnet", num_classes=0)
    m = LesionNet(_spec(), backbone=bb)
    assert m.backbone is bb


def test_small_input_stem_keeps_resolution_for_tiny_images():
    """MedMNIST/CIFAR-style stem: 3x3 stride-1 first conv, no max-pool -> a 28 px input keeps 4x4 final features."""
    from lesionkit.models.factory import ModelSpec, create_model

    x = torch.randn(2, 3, 28, 28)
    plain = create_model(ModelSpec("resnet18", num_outputs=7, img_size=28))
    small = create_model(ModelSpec("resnet18", num_outputs=7, img_size=28, small_input=True))
    assert plain.backbone.forward_features(x).shape[-2:] == (1, 1)
    assert small.backbone.forward_features(x).shape[-2:] == (4, 4)
    assert small.backbone.conv1.kernel_size == (3, 3) and small.backbone.conv1.stride == (1, 1)
    assert isinstance(small.backbone.maxpool, torch.nn.Identity) and small(x).shape == (2, 7)
    deep = create_model(ModelSpec("resnet10t", num_outputs=1, img_size=28, small_input=True))  # tiered deep stem
    assert deep.backbone.forward_features(x).shape[-2:] == (4, 4)
    with pytest.raises(UsageError, match="small-input"):
        create_model(ModelSpec("efficientnet_b0", num_outputs=2, img_size=28, small_input=True))

