"""Model shapes, parameter counts, and tiled inference equal to whole-image inference."""
import pytest
import torch

from srx4.predict.inference import super_resolve
from srx4.models import SRCNN, SRResNet, build_model, count_parameters


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shapes(scale):
    lr = torch.rand(2, 3, 11, 13)
    for model in (SRResNet(scale, num_blocks=2, channels=16), SRCNN(scale), SRCNN(scale, (9, 1, 5), y_only=True),
                  SRResNet(scale, num_blocks=1, channels=8, bicubic_residual=True)):
        assert model(lr).shape == (2, 3, 11 * scale, 13 * scale)


def test_parameter_counts_match_the_papers():
    assert 1.50e6 < count_parameters(SRResNet(4)) < 1.60e6     # SRResNet-16: ~1.5 M
    assert 69_000 < count_parameters(SRCNN(4)) < 69_500        # SRCNN 9-5-5 RGB: ~69 K
    assert count_parameters(SRCNN(4, (9, 1, 5), y_only=True)) == 9 * 9 * 64 + 64 + 64 * 32 + 32 + 5 * 5 * 32 + 1


def test_bicubic_residual_starts_at_bicubic():
    model = build_model({"name": "srresnet", "scale": 4, "num_blocks": 1, "channels": 8, "bicubic_residual": True})
    bicubic = build_model({"name": "bicubic", "scale": 4})
    lr = torch.rand(1, 3, 10, 10)
    assert torch.allclose(model.eval()(lr), bicubic(lr), atol=1e-6)


@pytest.mark.parametrize("config", [
    {"name": "srresnet", "scale": 4, "num_blocks": 3, "channels": 8, "bicubic_residual": True},
    {"name": "srcnn", "scale": 4}])
def test_tiled_inference_equals_whole_image(config):
    torch.manual_seed(0)
    model = build_model(config).eval()
    for p in model.parameters():  # non-trivial weights everywhere, the tail included
        p.data.add_(torch.randn_like(p) * 0.05)
    lr = torch.rand(1, 3, 45, 61)
    whole = super_resolve(model, lr, tile=0)
    tiled = super_resolve(model, lr, tile=16)
    assert tiled.shape == whole.shape == (1, 3, 180, 244)
    assert (tiled - whole).abs().max().item() <= 1 / 255 / 10


def test_tta_is_the_mean_of_the_eight_transforms():
    """A model that is not flip- or transpose-symmetric: TTA must equal the mean over the 8
    dihedral transforms (each undone on the output), computed here, and differ from one pass."""
    torch.manual_seed(0)
    model = SRResNet(4, num_blocks=1, channels=8).eval()
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    lr = torch.rand(1, 3, 12, 9)
    outputs = []
    for transpose in (False, True):
        for flip_h in (False, True):
            for flip_w in (False, True):
                x = lr.transpose(2, 3) if transpose else lr
                x = x.flip(2) if flip_h else x
                x = x.flip(3) if flip_w else x
                with torch.no_grad():
                    y = model(x)
                y = y.flip(3) if flip_w else y
                y = y.flip(2) if flip_h else y
                outputs.append(y.transpose(2, 3) if transpose else y)
    expected = torch.stack(outputs).mean(dim=0)
    plain = super_resolve(model, lr, tile=0)
    tta = super_resolve(model, lr, tile=0, tta=True)
    assert (tta - expected).abs().max().item() < 1e-5
    assert (tta - plain).abs().max().item() > 1e-3


def test_fast_inference_path_equals_the_plain_one():
    """predict.py's path (BatchNorm folded, channels-last) against the plain eager model."""
    from srx4.predict.inference import prepare_model
    torch.manual_seed(0)
    model = SRResNet(4, num_blocks=2, channels=16)
    model.train()
    for _ in range(3):  # non-trivial BatchNorm statistics
        model(torch.rand(2, 3, 12, 12))
    model.eval()
    lr = torch.rand(2, 3, 20, 17)
    plain = super_resolve(model, lr, tile=0)
    fast = super_resolve(prepare_model(model), lr, tile=0)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepare_model(model).modules())
    assert (fast - plain).abs().max().item() < 1e-4


def test_each_model_class_defaults_to_what_train_py_trains():
    """SRResNet() is the net `python src/train.py` trains (bicubic residual on), and so on for
    every architecture; a model.json from before the key existed still means the plain net."""
    from dataclasses import asdict
    from srx4.models import ARCHS, model_config_from_flags
    from srx4.train.config import TrainConfig
    for name, cls in ARCHS.items():
        if cls.__name__ == "ForeignModel":        # built from a file, never from flags
            continue
        assert cls(4).config() == model_config_from_flags(asdict(TrainConfig(model=name))), name
    assert SRResNet().config()["bicubic_residual"] is True
    old = build_model({"name": "srresnet", "scale": 4, "num_blocks": 1, "channels": 8})
    assert old.config()["bicubic_residual"] is False
