"""Runs written by earlier code still load: tests/fixtures/run_b7aebde/ holds the
last.ckpt, config.json, split.json and best weights of a TINY run trained by the code
of commit b7aebde (before the package was regrouped and TrainConfig moved into it)."""
import json
import shutil

import torch

from conftest import REPO, make_pairs, run_script
from srx4.models.weights import load_model
from srx4.runs.checkpoint import load_checkpoint
from srx4.train.config import TrainConfig, from_saved

OLD = REPO / "tests" / "fixtures" / "run_b7aebde"


def test_an_old_config_json_and_checkpoint_read_as_today_s_types():
    saved = json.loads((OLD / "config.json").read_text())
    config = from_saved(saved)
    assert isinstance(config, TrainConfig) and config.num_blocks == 1 and config.channels == 8
    assert config.grad_scale_init == 2.0**16 and config.demo          # fields newer than the run: defaults
    state = load_checkpoint(OLD / "last.ckpt")
    assert from_saved(state["train_config"]) == config
    assert state["epoch"] == 1 and "skipped_steps" not in state         # written before the key existed
    model, model_config = load_model(OLD)
    assert model_config["name"] == "srresnet" and model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_an_old_run_resumes_with_today_s_code(tmp_path):
    data = make_pairs(tmp_path / "data", count=8)            # the same pairs the fixture was trained on
    run = tmp_path / "logs" / "old"
    shutil.copytree(OLD, run)
    saved = json.loads((run / "config.json").read_text())
    saved["data"] = str(data)
    state = load_checkpoint(run / "last.ckpt")
    state["train_config"]["data"] = str(data)
    torch.save(state, run / "last.ckpt")
    run_script("train.py", "--resume", run / "last.ckpt", "--epochs", "2", work=tmp_path)
    after = load_checkpoint(run / "last.ckpt")
    assert after["epoch"] == 2 and after["samples_seen"] > state["samples_seen"]
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 2
