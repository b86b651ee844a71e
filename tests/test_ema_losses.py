"""The weight average (--ema) and the losses (--loss): the formulas, and what a run
validates, saves and resumes."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import BENCHMARKS, TINY, run_script
from srx4.runs.checkpoint import load_checkpoint
from srx4.train.ema import WeightAverage
from srx4.train.losses import charbonnier, loss_fn, ssim_uniform


def test_average_follows_the_warmed_up_decay():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.999)
    start = average.model.weight.clone()
    assert [round(WeightAverage(model, 0.999, n).decay_now(), 4) for n in (0, 8, 80, 890, 10**6)] == \
        [0.1, 0.5, 0.9, 0.99, 0.999]
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)                             # decay 0.1: 10% old, 90% new
    assert torch.allclose(average.model.weight, 0.1 * start + 0.9 * model.weight)
    assert average.updates == 1 and not average.model.weight.requires_grad
    copy = WeightAverage(torch.nn.Linear(3, 2), 0.999)
    copy.load_state_dict(average.state_dict())
    assert torch.equal(copy.model.weight, average.model.weight) and copy.updates == 1
    with pytest.raises(ValueError, match="--ema 1.5"):
        WeightAverage(model, 1.5)


def test_ssim_loss_is_the_competitions_ssim_and_every_loss_has_gradients():
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.random((2, 3, 30, 26)))
    sr = (hr + 0.05 * torch.from_numpy(rng.standard_normal(hr.shape))).clamp(0, 1)
    expected = np.mean([structural_similarity(hr[i].permute(1, 2, 0).numpy(), sr[i].permute(1, 2, 0).numpy(),
                                              data_range=1, channel_axis=2) for i in range(2)])
    assert abs(ssim_uniform(sr, hr).item() - expected) < 1e-12
    assert abs(charbonnier(sr, hr).item() - (sr - hr).abs().mean().item()) < 2e-3       # L1, smoothed near 0
    assert charbonnier(hr, hr).item() == pytest.approx(1e-3)
    for name in ("l1", "mse", "charbonnier", "l1+ssim"):
        x = sr.clone().float().requires_grad_(True)
        loss_fn(name, 0.1)(x, hr.float()).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name
    l1 = loss_fn("l1")(sr, hr).item()
    assert loss_fn("l1+ssim", 0.5)(sr, hr).item() == pytest.approx(l1 + 0.5 * (1 - expected))


def test_a_run_validates_saves_and_resumes_the_average(tmp_path, pairs_dir):
    run_script("train.py", "--data", pairs_dir, *TINY, "--epochs", "2", "--run", "e", "--loss", "l1+ssim",
               "--bn-refresh", "0", work=tmp_path)
    run = tmp_path / "logs" / "e"
    state = load_checkpoint(run / "last.ckpt")
    steps = state["samples_seen"] // 4
    assert state["ema"]["updates"] == steps and state["train_config"]["ema"] == 0.999
    best = load_file(run / "best.safetensors")
    summary = json.loads((run / "summary.json").read_text())
    if summary["best_epoch"] == 2:                    # the saved weights are the average, not the raw ones
        assert all(torch.equal(best[k], state["ema"]["model"][k]) for k in best)
    assert any(not torch.equal(state["ema"]["model"][k], state["model"][k]) for k in best)
    # resumed for a third epoch, the average goes on from its saved update count
    run_script("train.py", "--resume", run / "last.ckpt", "--epochs", "3", work=tmp_path)
    resumed = load_checkpoint(run / "last.ckpt")
    assert resumed["ema"]["updates"] == resumed["samples_seen"] // 4 > steps


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A VGG19 of seeded random weights saved as torchvision's state dict (its features: the
    part the loss reads; 80 MB)."""
    from torchvision.models import vgg19
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}, path)
    return path


def test_vgg_loss_is_finite_differentiable_and_grows_with_blur(vgg_file, tmp_path):
    from srx4.core.errors import FlagError
    from srx4.image.codec import read_image, to_tensor
    from srx4.train.perceptual import VggLoss
    hr = to_tensor(read_image(BENCHMARKS / "Set14/HR/baboon.png")[:96, :96])[None]        # (1, 3, 96, 96)
    criterion = loss_fn("l1+vgg", vgg_weight=1.0, vgg_weights=str(vgg_file))
    assert isinstance(criterion, VggLoss) and criterion(hr, hr).item() == 0.0
    blur = lambda k: torch.nn.functional.avg_pool2d(hr, k, stride=1, padding=k // 2, count_include_pad=False)  # noqa: E731
    perceptual = lambda sr: (criterion(sr, hr) - torch.nn.functional.l1_loss(sr, hr)).item()  # noqa: E731
    assert 0 < perceptual(blur(3)) < perceptual(blur(7))          # the feature distance grows with the blur
    sr = blur(3).clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):             # as in a bf16 step: the features stay fp32
        loss = criterion(sr, hr)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and sr.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in criterion.parameters())
    with pytest.raises(FlagError, match="nothing.pth not found; pass --vgg-weights"):
        VggLoss(tmp_path / "nothing.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(FlagError, match="not VGG19's weights"):
        VggLoss(tmp_path / "other.pth")


def test_a_run_with_the_perceptual_loss_trains_and_saves(vgg_file, tmp_path, pairs_dir):
    out = run_script("train.py", "--data", pairs_dir, *TINY, "--epochs", "1", "--loss", "l1+vgg", "--vgg-weights",
                     vgg_file, "--run", "vgg", work=tmp_path).stdout
    assert "loss: L1 + 0.1 x L1 of VGG19 conv5_4 features" in out
    run = tmp_path / "logs/vgg"
    assert (run / "best.safetensors").is_file() and json.loads((run / "config.json").read_text())["loss"] == "l1+vgg"
    missing = run_script("train.py", "--data", pairs_dir, *TINY, "--epochs", "1", "--loss", "l1+vgg",
                         "--vgg-weights", tmp_path / "none.pth", "--run", "novgg", work=tmp_path, check=False)
    assert missing.returncode == 2 and "none.pth not found" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
