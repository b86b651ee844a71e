"""What a training run shows besides its log, after each validation and at the end:
curves.png, samples/epoch_NNN.png, the tracker (--tracker) and logs/<run>/report.html
(at the end on every validation image, with the best weights). `RunViews` does it all
for the trainer (main process only); a picture that fails never stops a run.
curves.png is redrawn after a validation at most every CURVES_EVERY_S seconds (a drawing
costs 0.3-0.8 s of a CPU core: on short epochs it would rival the training) and always at
the end; the report between two drawings shows the last one.

`write_run_report(run_dir, cfg, rows, bicubic, model_images, bicubic_images, case_source, status)`:
rows the metrics.csv rows, bicubic the bicubic validation means, model_images /
bicubic_images the per-image figures from train/validate.py (matched by name),
case_source(index) -> (lr, bicubic, sr, hr) for the images shown as crops.
"""
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Optional

from srx4.core import layout
from srx4.image.codec import write_png
from srx4.image.scoring import Validation
from srx4.core.io import atomic_write_bytes
from srx4.runs.plots import comparison_strip, curves_png
from srx4.runs.html import Cases, case_crops, config_html, image_html, image_rows, table_html, write_report
from srx4.runs.runlog import METRIC_COLUMNS
from srx4.runs.tracking import open_tracker

CURVES_EVERY_S = 20.0
CASES_SHOWN = 3          # images shown as crops at each end of the gain ranking
FIGURES = ("psnr", "ssim", "score", "psnr_y")


def case_source(model, dataset, device, scale: int):
    """index -> (lr, bicubic, sr, hr) float CPU tensors for one validation image, SR made
    by `model` (the inference form validation used), bicubic by the MATLAB resize."""
    import torch
    from srx4.image.codec import to_float
    from srx4.image.resize import resize_tensor
    from srx4.predict.inference import super_resolve

    @functools.lru_cache(maxsize=2 * CASES_SHOWN)
    def source(index):
        _, lr, hr = dataset[index]
        lr = to_float(lr[None], device)                                      # (1, 3, h, w)
        sr = super_resolve(model, lr, amp=False).clamp(0, 1)[0].cpu()       # (3, sh, sw)
        bicubic = resize_tensor(lr.double(), scale)[0].float().clamp(0, 1).cpu()
        return lr[0].cpu(), bicubic, sr, to_float(hr, torch.device("cpu"))
    return source


def write_run_report(run_dir, cfg, rows, bicubic: dict, model_images, bicubic_images: dict, source,
                     status: str, summary: dict = None, curves: bytes = None):
    """report.html; `curves`: the curves PNG when already drawn for these rows."""
    scale = cfg.scale
    names = [r["name"] for r in model_images]
    bicubic_rows = [bicubic_images.get(n, {}) for n in names]
    images = image_rows(names, model_images, bicubic_rows, FIGURES)
    cases = Cases(CASES_SHOWN)
    by_name = {r["name"]: r for r in model_images}
    ranked = [r for r in images if r["gain (dB)"] == r["gain (dB)"]]       # those with a bicubic figure
    low = ranked[:min(CASES_SHOWN, (len(ranked) + 1) // 2)]             # disjoint ends of the ranking
    for sides, rows_here in ((("low",), low), (("high",), ranked[len(low):][-CASES_SHOWN:])):
        for row in rows_here:
            index = by_name[row["image"]]["index"]
            cases.offer(row["image"], row["gain (dB)"],
                        lambda focus, i=index: case_crops(*source(i), scale, focus=focus), sides=sides,
                        PSNR=row["model psnr"], score=row["model score"])
    last = rows[-1] if rows else {}
    cards = [("status", status)]
    if summary:
        cards += [(f"best weights on {layout.final_check_on(summary)} ({summary['model']['images']} images)",
                   f"{summary['model']['psnr']:.3f} dB ({summary['gain_db']:+.3f} vs bicubic)"),
                  ("score (PSNR + 40 SSIM)", f"{summary['model']['score']:.3f} vs {summary['bicubic']['score']:.3f}"),
                  ("best epoch", str(summary["best_epoch"]))]
    elif last.get("val_psnr"):
        cards += [("validation PSNR (this epoch)", f"{float(last['val_psnr']):.3f} dB"),
                  ("bicubic", f"{bicubic['psnr']:.3f} dB" if bicubic else "-")]
    board = (summary or {}).get("leaderboard")
    if board:
        cards.append((f"leaderboard figure ({board['metric']})", f"{board['model']:.3f} vs bicubic {board['bicubic']:.3f}"))
    if summary and summary.get("worse_than_bicubic"):
        cards.append(("WARNING", "worse than bicubic"))
    image_columns = ["image", "gain (dB)"] + [f"{who} {c}" for c in FIGURES for who in ("bicubic", "model")]
    where = ("every validation image, best weights" if summary else f"the {len(names)} images scored each epoch")
    sections = [
        ("Curves", image_html(curves or curves_png(rows, bicubic), "training curves")),
        ("Epochs", '<div class="scroll">' + table_html(rows, [c for c in METRIC_COLUMNS if rows and c in rows[0]],
                                                       formats={}) + "</div>"),
        (f"Images, lowest gain first ({where})",
         '<div class="scroll">' + table_html(images, image_columns, signed=("gain (dB)",), table_id="images")
         + "</div>"),
        ("Settings", config_html(dataclasses.asdict(cfg))),
    ]
    data = data_section(run_dir)
    if data:
        sections.insert(3, ("Data: files left out and the least alike pairs", data))
    write_report(run_dir / layout.REPORT, f"run {run_dir.name}", f"{run_dir}", cards, sections, cases)


def data_section(run_dir) -> str:
    """hygiene.json as HTML: what was left out and why, and the pairs whose bicubic-upscaled
    LR is farthest from their HR (srx4.data.pair_check); '' when the run wrote none."""
    try:
        hygiene = json.loads((Path(run_dir) / layout.HYGIENE).read_text())
    except (OSError, ValueError):
        return ""
    problems = [{"reason": reason, "files": len(names), "first": ", ".join(names[:5])}
                for reason, names in sorted(hygiene.get("problems", {}).items())]
    html = f"<p>{hygiene.get('used', 0)} pairs used.</p>"
    if problems:
        html += table_html(problems, ["reason", "files", "first"], formats={})
    check = hygiene.get("pair_check") or {}
    if check.get("worst"):
        left = set(check.get("left_out", []))
        rows = [{"pair": n, "bicubic PSNR (dB)": up, "averaged down (dB)": "" if down is None else down,
                 "left out": "yes" if n in left else ""} for n, up, down in check["worst"]]
        html += (f"<p>{check['measure']}: median {check.get('median')} dB over {check['measured']} pairs; "
                 f"pairs under {check['min_pair_psnr']:g} dB both ways are left out (--min-pair-psnr).</p>"
                 + table_html(rows, ["pair", "bicubic PSNR (dB)", "averaged down (dB)", "left out"],
                              formats={"bicubic PSNR (dB)": ".2f", "averaged down (dB)": ".2f"},
                              table_id="pairs"))
    return html


class RunViews:
    """curves.png, the sample strips, the tracker and report.html of one run (rank 0)."""

    def __init__(self, run_dir, cfg, log, enabled: bool = True):
        """cfg: the run's TrainConfig (srx4.train.config), read as attributes."""
        self.run_dir, self.cfg, self.log, self.enabled = run_dir, cfg, log, enabled
        self.tracker = open_tracker(cfg.tracker, run_dir, dataclasses.asdict(cfg)) if enabled else None
        self.curves, self.drawn_at, self.drawn_rows = None, 0.0, 0    # the last curves.png: bytes, when, rows
        if self.tracker:
            log(f"tracking to {self.tracker.description}")

    def epoch(self, epoch: int, row: dict, val: Optional[Validation], dataset, bicubic, bicubic_images, device):
        """After validating epoch `epoch` (1-based): `val` what srx4.train.validate measured
        (None without a validation split), row the metrics.csv row just added."""
        if not self.enabled:
            return
        cfg = self.cfg
        curves = self._curves(bicubic)                    # drawn once: curves.png and the report
        first = val.first if val else None
        sample = cfg.sample_every and epoch % cfg.sample_every == 0
        strip = comparison_strip(*first, cfg.scale) if first is not None and (sample or self.tracker) else None
        if sample and strip is not None:
            write_png(self.run_dir / layout.SAMPLES / f"epoch_{epoch:03d}.png", strip)
        if self.tracker:
            self.tracker.epoch(row, strip)
        self._report(val, dataset, bicubic, bicubic_images, device, f"training: epoch {epoch} of {cfg.epochs}",
                     curves=curves)

    def finish(self, val: Validation, dataset, bicubic, bicubic_images, device, summary: dict):
        if not self.enabled:
            return
        stopped = f" ({summary['stopped']})" if summary["stopped"] else ""
        try:
            curves = self._curves(bicubic, final=True)
        except Exception as err:        # a picture must never cost a training run
            curves = None
            self.log(f"{layout.CURVES} not redrawn: {type(err).__name__}: {err}")
        done, rows = summary["epochs_done"], len(self.log.rows)
        cut = f" and part of epoch {done + 1}" if rows > done else ""     # an epoch cut by the clock has its row
        self._report(val, dataset, bicubic, bicubic_images, device,
                     f"finished: {done} of {self.cfg.epochs} epochs{cut}{stopped}", summary, curves)
        if self.tracker:
            self.tracker.finish(summary, self.run_dir)

    def _curves(self, bicubic, final: bool = False) -> bytes:
        """curves.png of the rows so far: drawn the first time, then redrawn when rows were added
        since and it is `final` or CURVES_EVERY_S after the last drawing; else the last drawing."""
        rows = len(self.log.rows)
        if self.curves is None or (rows != self.drawn_rows
                                   and (final or time.monotonic() - self.drawn_at >= CURVES_EVERY_S)):
            self.curves = curves_png(self.log.rows, bicubic)
            atomic_write_bytes(self.run_dir / layout.CURVES, self.curves)
            self.drawn_at, self.drawn_rows = time.monotonic(), rows
        return self.curves

    def _report(self, val, dataset, bicubic, bicubic_images, device, status, summary=None, curves=None):
        if not val:
            return
        try:
            source = case_source(val.model, dataset, device, self.cfg.scale)
            write_run_report(self.run_dir, self.cfg, self.log.rows, bicubic, val.per_image, bicubic_images,
                             source, status, summary, curves)
        except Exception as err:        # a picture must never cost a training run
            self.log(f"{layout.REPORT} not written: {type(err).__name__}: {err}")
