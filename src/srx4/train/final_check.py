"""The end of a run: the best weights and bicubic scored on the final check's images (every
validation image, or some training images without a validation split), and what each
DDP rank ended with, compared (the same folder, the same weights scored, bit-identical
weights), so summary.json can say a model is worse than bicubic, or that ranks drifted.
"""
import hashlib

from srx4 import __version__
from srx4.core import distributed, layout, paths
from srx4.core.io import file_sha256, write_json
from srx4.image.scoring import COMPETITION_METRICS, LEADERBOARD_COLUMNS, leaderboard_metric
from srx4.models import Bicubic
from srx4.models.weights import VERSION_KEY, load_model
from srx4.predict.choose import bicubic_warning
from srx4.train.plan import minutes

SELECT_LABELS = {"psnr": "PSNR", "score": "score (PSNR + 40 SSIM)"}   # --select: what picks the best weights


def key_is_set(best: dict, key: str) -> bool:
    """Whether the best record holds a real figure for `key` (not the -inf of no validation yet)."""
    value = best.get(key)
    return value is not None and value == value and value != float("-inf")



def final_check(score, run_dir, current_model, images, indices, scale: int, device):
    """score(model, dataset, indices, desc) -> Validation, the trainer's validation.
    Returns (the model's Validation, bicubic's, what was scored: the sha256 of
    best.safetensors, or "the current weights" when none)."""
    best, scored = current_model, "the current weights"
    if (run_dir / layout.WEIGHTS).is_file():        # rank 0 wrote them; every rank reads them
        best, _ = load_model(run_dir / layout.WEIGHTS, device=device)
        scored = file_sha256(run_dir / layout.WEIGHTS)
    model = score(best, images, indices, "final check")
    bicubic = score(Bicubic(scale).to(device), images, indices, "final check (bicubic)")
    return model, bicubic, scored


def fingerprint(*models) -> str:
    """The first 16 hex digits of a sha256 over the models' parameters: equal exactly when
    the weights are bit-identical."""
    digest = hashlib.sha256()
    for model in models:
        for p in model.parameters():
            digest.update(p.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def ranks_agree(rank: int, world: int, run_dir, scored: str, models, log) -> list:
    """Each rank's run folder, the weights its share of the final check scored and the
    fingerprint of its `models`, gathered on every rank; a loud line when they differ."""
    mine = {"rank": rank, "run_dir": str(run_dir), "scored": scored, "weights_fingerprint": fingerprint(*models)}
    ranks = distributed.gather(mine, world)
    for key in ("run_dir", "scored", "weights_fingerprint"):
        if len({r[key] for r in ranks}) > 1:
            log(f"WARNING: the {world} processes disagree on {key}: "
                + ", ".join(f"rank {r['rank']} {r[key]}" for r in ranks))
    return ranks


def final_check_line(run) -> str:
    """What the end of the run does, and about how long, from the last epoch's validation."""
    data, rows = run.data, run.log.rows
    count = len(data.final_check_indices)
    text = f"final check: the best weights and bicubic on {count} {data.final_check_on} images"
    if rows and rows[-1].get("val_seconds") and data.val_subset:
        per_image = float(rows[-1]["val_seconds"]) / len(data.val_subset)
        text += f", about {minutes(1.5 * per_image * count)} at the last validation's pace"
    return text

def finish(run, stopped):
    """The end of a run (a Trainer's): the final check against bicubic, the lines that say
    how the run went, summary.json, the report, logs/last_run.json."""
    log, data, state = run.log, run.data, run.state
    if stopped:
        log(f"stopped early: {stopped}; resume with --resume {run.run_dir / layout.CHECKPOINT}")
    log(final_check_line(run))
    final, bicubic, scored = final_check(run._validate, run.run_dir, run.parts.eval_model, data.final_check_set,
                                         data.final_check_indices, run.cfg.scale, run.device)
    gain = final.psnr - bicubic.psnr
    subset = len(data.val_subset) < len(data.val_set)
    if state.bicubic and "epoch" in state.best and key_is_set(state.best, run.select):
        key = run.select
        at = f"epoch {state.best['epoch']}" if state.best["epoch"] else "the start weights (no epoch beat them)"
        log(f"best validation {SELECT_LABELS[key]} {state.best[key]:.3f} at {at}"
            + (f" on the {len(data.val_subset)}-image subset scored each epoch" if subset else "")
            + f" vs bicubic {state.bicubic[key]:.3f} ({state.best[key] - state.bicubic[key]:+.3f})")
    log(f"best weights on {data.final_check_on} ({final.images} images): PSNR {final.psnr:.3f} dB vs bicubic "
        f"{bicubic.psnr:.3f} dB ({gain:+.3f} dB); score {final.score:.3f} vs {bicubic.score:.3f}")
    worse = gain < 0
    if worse:
        log(bicubic_warning(final.psnr, bicubic.psnr, data.final_check_on))
    metric, why = leaderboard_metric(run.cfg.metric, paths.competition_slug(COMPETITION_METRICS))
    column = LEADERBOARD_COLUMNS[metric]
    leaderboard = {"metric": metric, "why": why, "model": final.figure(column), "bicubic": bicubic.figure(column)}
    log(f"leaderboard figure ({metric}; {why}): {leaderboard['model']:.3f} vs bicubic {leaderboard['bicubic']:.3f}")
    ranks = ranks_agree(run.rank, run.world, run.run_dir, scored,
                        (run.parts.plain_model, run.parts.eval_model), log)
    summary = {"run": run.run_dir.name, "best_epoch": state.best.get("epoch", 0), "best_subset": state.best,
               "final_check_on": data.final_check_on, "model": final.figures(), "bicubic": bicubic.figures(), "gain_db": gain,
               "worse_than_bicubic": worse, "stopped": stopped or "", "epochs_done": state.epoch,
               "epoch_seconds": round(sum(float(r["seconds"]) for r in run.log.rows), 1),
               "skipped_steps": state.skipped_steps, "ranks": ranks, "leaderboard": leaderboard,
               VERSION_KEY: __version__, "config_file": run.cfg.config, "config_sha256": run.cfg.config_sha256}
    if run.is_main:
        write_json(run.run_dir / layout.SUMMARY, summary)
    log("writing the report (report.html, curves.png: the model run again on the images it shows)")
    run.views.finish(final, data.final_check_set, state.bicubic, bicubic.by_name(), run.device, summary)
    if run.is_main:
        paths.record_last_run(run.run_dir)
    log(f"weights: {run.run_dir / layout.WEIGHTS}  checkpoint: {run.run_dir / layout.CHECKPOINT}")
