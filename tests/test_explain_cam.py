"""CAM methods: parity with pytorch-grad-cam on timm models and a LesionNet, scoring rule, target layers."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from lesionkit.errors import UsageError
from lesionkit.explain.cam import (
    CAM,
    cam_from_grads,
    class_scores,
    guided_backprop,
    guided_gradcam,
    guided_model,
    upsample_normalize,
)
from lesionkit.explain.target_layers import (
    default_target_layer,
    get_module,
    spatial_layers,
)
from lesionkit.models.factory import ModelSpec, create_model

try:  # pytorch-grad-cam (PyPI grad-cam) is the reference; installed with --no-deps (see the Makefile)
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    HAVE_LIB = True
except ImportError as e:  # pragma: no cover - depends on the environment
    HAVE_LIB = False
    LIB_ERROR = str(e)

needs_lib = pytest.mark.skipif(not HAVE_LIB, reason="pytorch-grad-cam not importable: install with "
                               "`pip install --no-deps grad-cam==1.5.7 ttach tqdm` (make install does)")


def _timm(name: str, classes: int = 4, double: bool = False) -> torch.nn.Module:
    """A random-init timm model; ``double`` for the parity tests: both implementations then compute in float64, so
    the comparison measures the algorithms, not float32 rounding (in float32 the library's own rounding of the
    Grad-CAM++ weights, G²/(2G² + ΣA·G³ + 1e-6) with G ~ 1e-3, reaches ~1.4e-5 on these maps)."""
    torch.manual_seed(0)
    m = timm.create_model(name, num_classes=classes).eval()
    # random BN statistics so the maps are not degenerate
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m.double() if double else m


def _lib_cam(lib_cls, model, layer, x, classes):
    with lib_cls(model=model, target_layers=[layer]) as c:
        return c(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in classes])


@needs_lib
@pytest.mark.parametrize("name", ["resnet10t", "convnext_atto", "efficientnet_b0"])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cam_matches_pytorch_grad_cam_on_timm(name: str, method: str) -> None:
    model = _timm(name, double=True)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    classes = torch.tensor([0, 3, 1])
    with CAM(model, None, (method,)) as cam:
        res = cam(x, classes)
        mine = upsample_normalize(res.maps[method], (64, 64)).numpy()
        layer = cam.module
    ref = _lib_cam({"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}[method], model, layer, x, classes)
    assert mine.shape == ref.shape == (3, 64, 64)
    assert mine.max() > 0.99 and mine.std() > 0.05  # a real, non-constant map
    assert np.abs(mine - ref).max() <= 1e-5


@needs_lib
def test_cam_matches_library_on_lesionnet_and_at_another_layer() -> None:
    torch.manual_seed(0)
    net = create_model(ModelSpec(name="resnet10t", num_outputs=3, img_size=48)).eval().double()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cls = torch.tensor([2, 0])
    for layer in (None, "backbone.layer3"):
        with CAM(net, layer, ("gradcam", "gradcam++")) as cam:
            res = cam(x, cls)
            mod = cam.module
            assert cam.layer == (layer or "backbone.layer4")
        for method, lib in (("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)):
            ref = _lib_cam(lib, net, mod, x, cls)
            assert np.abs(upsample_normalize(res.maps[method], (48, 48)).numpy() - ref).max() <= 1e-5


@needs_lib
def test_guided_backprop_matches_library() -> None:
    model = _timm("resnet10t", double=True)
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cls = torch.tensor([1, 2])
    gm, n_relu = guided_model(model)
    assert n_relu > 5
    mine = guided_backprop(gm, x, cls).permute(0, 2, 3, 1).numpy()
    ref = np.stack([GuidedBackpropReLUModel(_timm("resnet10t", double=True), "cpu")(x[i:i + 1], int(cls[i])) for i in range(2)])
    scale = np.abs(ref).max()
    assert scale > 0
    assert np.abs(mine - ref).max() <= 1e-5 * max(1.0, scale)
    # the model itself is untouched (guided_model works on a copy)
    assert not any(type(m).__name__ == "GuidedReLU" for m in model.modules())
    cam01 = torch.rand(2, 48, 48, dtype=torch.float64)
    gg = guided_gradcam(torch.from_numpy(mine).permute(0, 3, 1, 2), cam01)
    assert torch.allclose(gg, torch.from_numpy(mine).permute(0, 3, 1, 2) * cam01[:, None])


def test_gradcam_by_hand_and_gradcam_pp_zero_grads() -> None:
    a = torch.rand(1, 2, 3, 3)
    g = torch.zeros(1, 2, 3, 3)
    g[0, 0] = 0.5
    g[0, 1] = -0.25
    expect = torch.relu(0.5 * a[0, 0] - 0.25 * a[0, 1])
    assert torch.allclose(cam_from_grads(a, g, "gradcam")[0], expect)
    # Grad-CAM++ ignores negative gradients: only channel 0 contributes
    pp = cam_from_grads(a, g, "gradcam++")[0]
    w0 = (0.25 / (2 * 0.25 + a[0, 0].sum() * 0.125 + 1e-6) * 0.5 * 9)
    assert torch.allclose(pp, w0 * a[0, 0], atol=1e-6)
    with pytest.raises(UsageError):
        cam_from_grads(a, g, "scorecam")


def test_class_scores_binary_and_multiclass() -> None:
    logits = torch.tensor([[2.0], [-1.0]])
    assert class_scores(logits, torch.tensor([1, 0])).tolist() == [2.0, 1.0]
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert class_scores(logits, torch.tensor([2, 0])).tolist() == [3.0, 4.0]


def test_binary_cam_of_class0_is_cam_of_negated_logit() -> None:
    torch.manual_seed(0)
    net = create_model(ModelSpec(name="resnet10t", num_outputs=1, img_size=32)).eval()
    x = torch.randn(2, 3, 32, 32)
    with CAM(net) as cam:
        r1 = cam(x, torch.tensor([1, 1]))
        r0 = cam(x, torch.tensor([0, 0]))
    # weights flip sign: the two ReLU'd maps never overlap (where one is positive the other is zero)
    assert torch.all((r1.maps["gradcam"] > 0) & (r0.maps["gradcam"] > 0) == 0)
    assert torch.allclose(r1.scores, -r0.scores)


def test_hook_only_acts_inside_call_and_grad_mode_restored() -> None:
    net = _timm("resnet10t")
    x = torch.randn(1, 3, 32, 32)
    with CAM(net) as cam:
        with torch.no_grad():
            out = net(x)
        assert not out.requires_grad
        cam(x)
        with torch.no_grad():
            cam(x)
            assert not torch.is_grad_enabled()
        assert torch.is_grad_enabled()
    # removed: a plain forward has no hook
    assert not net.layer4._forward_hooks


def test_default_layers_are_the_last_feature_stage() -> None:
    expect = {"resnet10t": "layer4", "convnext_atto": "stages.3", "efficientnet_b0": "blocks.6",
              "mobilenetv3_small_050": "blocks.5"}
    for name, layer in expect.items():
        assert default_target_layer(timm.create_model(name, num_classes=2)) == layer
    net = create_model(ModelSpec(name="resnet10t", num_outputs=2, img_size=32))
    assert default_target_layer(net) == "backbone.layer4"


def test_vit_tokens_are_laid_out_as_a_grid() -> None:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=64).eval()
    with CAM(vit) as cam:
        assert cam.layer == "blocks.11"
        res = cam(torch.randn(1, 3, 64, 64))
    assert res.maps["gradcam"].shape == (1, 4, 4)


def test_wrong_layer_name_lists_the_valid_ones() -> None:
    net = create_model(ModelSpec(name="resnet10t", num_outputs=2, img_size=32))
    with pytest.raises(UsageError) as e:
        get_module(net, "backbone.layer9")
    text = str(e.value)
    assert "backbone.layer4" in text and "backbone.layer3" in text and "close matches" in text
    layers = spatial_layers(net)
    assert "backbone.layer4" in layers and "head" not in layers
    with pytest.raises(UsageError, match="not a spatial map"), CAM(net, "backbone.global_pool") as cam:
        cam(torch.randn(1, 3, 32, 32))
