"""--tracker tensorboard|mlflow: what a run logs is read back with each package's own reader."""
import csv

import pytest

from conftest import TINY, need_module, run_script


def metrics_rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_tensorboard_holds_every_epochs_figures_the_strips_and_the_settings(tmp_path, pairs_dir):
    need_module("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run_script("train.py", "--data", pairs_dir, *TINY, "--epochs", "2", "--run", "a", "--tracker", "tensorboard",
               work=tmp_path)
    run = tmp_path / "logs" / "a"
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    rows = metrics_rows(run)
    for column in ("val_psnr", "val_score", "bicubic_psnr"):
        logged = events.Scalars(f"val/{column}")
        assert [e.step for e in logged] == [1, 2]
        assert [round(e.value, 4) for e in logged] == [float(r[column]) for r in rows]
    assert [e.step for e in events.Scalars("train/train_loss")] == [1, 2]
    strips = events.Images("comparison: LR | bicubic | SR | HR")
    assert len(strips) == 2 and strips[0].width > 4 * strips[0].height // 2
    hparams = EventAccumulator(str(run / "tensorboard" / "hparams"))
    hparams.Reload()
    assert "final/psnr" in hparams.Tags()["scalars"]


@pytest.mark.slow
def test_mlflow_run_round_trips_and_a_resume_continues_it(tmp_path, pairs_dir):
    need_module("mlflow")
    from mlflow.tracking import MlflowClient
    run_script("train.py", "--data", pairs_dir, *TINY, "--epochs", "1", "--run", "m", "--tracker", "mlflow",
               work=tmp_path)
    run = tmp_path / "logs" / "m"
    run_script("train.py", "--resume", run / "last.ckpt", "--epochs", "2", work=tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srx4")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1                                        # the resume went on in the same run
    logged = runs[0]
    assert logged.info.run_name == "m" and logged.info.status == "FINISHED"
    assert logged.data.params["learning_rate"] == "0.0001" and logged.data.params["tracker"] == "mlflow"
    history = client.get_metric_history(logged.info.run_id, "val_psnr")
    rows = metrics_rows(run)
    assert sorted((m.step, round(m.value, 4)) for m in history) == [(int(r["epoch"]), float(r["val_psnr"]))
                                                                      for r in rows]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"weights", "samples", "summary.json", "report.html"} <= artifacts
    local = client.download_artifacts(logged.info.run_id, "weights/best.safetensors", str(tmp_path / "down"))
    assert open(local, "rb").read() == (run / "best.safetensors").read_bytes()


def test_a_missing_tracker_package_is_one_line_before_any_work(tmp_path, pairs_dir):
    hidden = tmp_path / "hide"          # a package that fails to import, as a missing one does
    (hidden / "mlflow").mkdir(parents=True)
    (hidden / "mlflow" / "__init__.py").write_text("raise ImportError('No module named mlflow')\n")
    done = run_script("train.py", "--data", pairs_dir, *TINY, "--run", "x", "--tracker", "mlflow", work=tmp_path,
                      env_extra={"PYTHONPATH": str(hidden)}, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: --tracker mlflow needs the mlflow package: "
                                   "pip install -r requirements-extras.txt")
    assert not (tmp_path / "logs" / "x").exists()
