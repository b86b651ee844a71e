"""The weight average (--ema) and the losses (--loss): the formulas, and what a run
validates, saves and resumes."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, run_script
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
