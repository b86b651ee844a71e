"""The model zoo's declared interface, checked against what each model really does:
receptive radius (tiles), rebuild from model.json, bicubic start, the SPAN kernel
product, activation checkpointing and gradient accumulation."""
import copy

import pytest
import torch
import torch.nn.functional as F

from srx4.models import ARCHS, EDSR, SPAN, TRAINABLE, SRResNet, build_model, count_parameters, model_config_from_flags
from srx4.models.base import checkpoint_activations
from srx4.models.span import RepConv3
from srx4.train.step import train_step
from srx4.predict.inference import super_resolve

SMALL = {"srresnet": dict(num_blocks=2, channels=8), "edsr": dict(num_blocks=2, channels=8),
         "span": dict(num_blocks=2, channels=8), "srcnn": {}}


def small(name, scale=4, **extra):
    torch.manual_seed(0)
    model = ARCHS[name](scale, **{**SMALL[name], **extra})
    for p in model.parameters():      # non-trivial weights everywhere, zero-initialised tails included
        p.data.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.mark.parametrize("name", TRAINABLE)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_and_rebuild_from_config(name, scale):
    model = small(name, scale)
    lr = torch.rand(2, 3, 11, 13)
    sr = model(lr)
    assert sr.shape == (2, 3, 11 * scale, 13 * scale)
    again = build_model(model.config())
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.eval()(lr), sr)
    assert model.config()["name"] == name and model.config()["scale"] == scale


@pytest.mark.parametrize("name", TRAINABLE)
def test_receptive_radius_bounds_the_reach_of_a_pixel(name):
    """Changing one LR pixel changes no SR pixel farther than the declared radius: the
    overlap tiling relies on it."""
    model, s = small(name), 4
    lr = torch.rand(1, 3, 80, 80)
    moved = lr.clone()
    moved[:, :, 40, 40] += 0.5
    with torch.no_grad():
        diff = (model(moved) - model(lr)).abs().amax(dim=1)[0]       # (320, 320)
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    reach = max((ys // s - 40).abs().max().item(), (xs // s - 40).abs().max().item())
    assert 0 < reach <= model.receptive_radius


@pytest.mark.parametrize("name", TRAINABLE)
def test_tiled_equals_whole_image(name):
    model = small(name)
    lr = torch.rand(1, 3, 45, 61)
    whole, tiled = super_resolve(model, lr, tile=0), super_resolve(model, lr, tile=16)
    assert (tiled - whole).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["srresnet", "edsr", "span"])
def test_bicubic_residual_starts_at_bicubic(name):
    torch.manual_seed(0)
    model = ARCHS[name](4, **SMALL[name], bicubic_residual=True).eval()
    lr = torch.rand(1, 3, 10, 12)
    assert torch.allclose(model(lr), build_model({"name": "bicubic", "scale": 4})(lr), atol=1e-6)


def test_flags_give_each_model_its_own_defaults():
    flags = dict(scale=4, num_blocks=0, channels=0, bicubic_residual=False, srcnn_kernels="9-1-5", y_only=False)
    assert model_config_from_flags({**flags, "model": "span"}) == {
        "name": "span", "scale": 4, "num_blocks": 6, "channels": 48, "bicubic_residual": False}
    assert model_config_from_flags({**flags, "model": "edsr", "channels": 32})["channels"] == 32
    assert model_config_from_flags({**flags, "model": "srcnn"})["kernel_sizes"] == [9, 1, 5]
    assert 1.45e6 < count_parameters(EDSR(4, bicubic_residual=False)) < 1.55e6     # EDSR-baseline x4: ~1.5 M
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in EDSR(4).modules())


def test_span_kernel_is_exactly_the_branch_product():
    """RepConv3 = 1x1 expand -> 3x3 -> 1x1 project (+ 1x1 shortcut), zero padding included,
    computed here layer by layer."""
    torch.manual_seed(0)
    conv = RepConv3(5, 7)
    x = torch.randn(2, 5, 9, 11, dtype=torch.float64)
    conv = conv.double()
    branch = F.conv2d(x, conv.expand[:, :, None, None])
    branch = F.conv2d(branch, conv.core, padding=1)
    branch = F.conv2d(branch, conv.project[:, :, None, None])
    expected = branch + F.conv2d(x, conv.shortcut[:, :, None, None]) + conv.bias[None, :, None, None]
    assert (conv(x) - expected).abs().max().item() < 1e-12
    inference = count_parameters(SPAN(4)) - sum(p.numel() for m in SPAN(4).modules() if isinstance(m, RepConv3)
                                                for p in m.parameters())
    assert inference < 0.1e6      # the convs outside the RepConv3s; the whole inference form is ~0.4 M


@pytest.mark.parametrize("name", TRAINABLE)
def test_inference_form_equals_the_trained_form(name):
    """predict.py's form (BatchNorm folded, SPAN's kernels formed once) gives the same SR."""
    from srx4.predict.inference import prepare_model
    model = small(name)
    fast = prepare_model(model, channels_last=False)
    assert not any(isinstance(m, (RepConv3, torch.nn.BatchNorm2d)) for m in fast.modules())
    lr = torch.rand(2, 3, 14, 10)
    with torch.no_grad():
        assert (fast(lr) - model(lr)).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", ["srresnet", "span"])
def test_activation_checkpointing_keeps_the_gradients(name):
    model = small(name).train()
    plain = copy.deepcopy(model)
    assert checkpoint_activations(model) == 2
    lr = torch.rand(2, 3, 12, 12)
    for m in (model, plain):
        m(lr).square().mean().backward()
    for (k, a), b in zip(model.named_parameters(), plain.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), k
    copy.deepcopy(model).eval()(lr)          # copies (EMA, validation) still run


def test_gradient_accumulation_takes_the_same_step():
    """Without BatchNorm (EDSR) two micro-batches of 2 give the step one batch of 4 gives."""
    torch.manual_seed(0)
    one = small("edsr").train()
    two = copy.deepcopy(one)
    lr, hr = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 32, 32)
    losses = []
    for model, micro in ((one, 1), (two, 2)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses.append(train_step(model, optimizer, None, lr, hr, "l1", None, micro=micro).loss)
    assert abs(losses[0] - losses[1]) < 1e-6
    for a, b in zip(one.parameters(), two.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.equal(next(one.parameters()), next(small("edsr").parameters()))


def test_srresnet_keeps_its_weights_layout():
    """Weights trained before the archs package still load: the same state-dict keys."""
    keys = set(SRResNet(4, num_blocks=1, channels=8, bicubic_residual=True).state_dict())
    assert {"head.0.weight", "blocks.0.body.0.weight", "body_tail.1.running_mean", "upsample.0.weight",
            "upsample.2.weight", "upsample.5.weight", "tail.weight"} <= keys
    assert not any("bicubic" in k for k in keys)
