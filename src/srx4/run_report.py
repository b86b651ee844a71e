"""logs/<run>/report.html: what a training run has done so far, rewritten at each
validation and at the end (then on every validation image, with the best weights).

`write_run_report(run_dir, cfg, rows, bicubic, model_images, bicubic_images, case_source, status)`:
rows the metrics.csv rows, bicubic the bicubic validation means, model_images /
bicubic_images the per-image figures from engine.validate (matched by name),
case_source(index) -> (lr, bicubic, sr, hr) for the images shown as crops.
"""
import functools

from srx4.plots import curves_png
from srx4.report import Cases, case_crops, config_html, image_html, image_rows, table_html, write_report
from srx4.runlog import METRIC_COLUMNS

REPORT_NAME = "report.html"
CASES_SHOWN = 3          # images shown as crops at each end of the gain ranking
FIGURES = ("psnr", "ssim", "score", "psnr_y")


def case_source(model, dataset, device, scale: int):
    """index -> (lr, bicubic, sr, hr) float CPU tensors for one validation image, SR made
    by `model` (the inference form validation used), bicubic by the MATLAB resize."""
    import torch
    from srx4.engine import to_float
    from srx4.imresize import resize_tensor
    from srx4.infer import super_resolve

    @functools.lru_cache(maxsize=2 * CASES_SHOWN)
    def source(index):
        _, lr, hr = dataset[index]
        lr = to_float(lr[None], device)                                      # (1, 3, h, w)
        sr = super_resolve(model, lr, amp=False).clamp(0, 1)[0].cpu()       # (3, sh, sw)
        bicubic = resize_tensor(lr.double(), scale)[0].float().clamp(0, 1).cpu()
        return lr[0].cpu(), bicubic, sr, to_float(hr, torch.device("cpu"))
    return source


def write_run_report(run_dir, cfg: dict, rows, bicubic: dict, model_images, bicubic_images: dict, source,
                     status: str, summary: dict = None):
    scale = cfg["scale"]
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
        cards += [(f"best weights on {summary['checked_on']} ({summary['model']['images']} images)",
                   f"{summary['model']['psnr']:.3f} dB ({summary['gain_db']:+.3f} vs bicubic)"),
                  ("score (PSNR + 40 SSIM)", f"{summary['model']['score']:.3f} vs {summary['bicubic']['score']:.3f}"),
                  ("best epoch", str(summary["best_epoch"]))]
    elif last.get("val_psnr"):
        cards += [("validation PSNR (this epoch)", f"{float(last['val_psnr']):.3f} dB"),
                  ("bicubic", f"{bicubic['psnr']:.3f} dB" if bicubic else "-")]
    if summary and summary.get("worse_than_bicubic"):
        cards.append(("WARNING", "worse than bicubic"))
    image_columns = ["image", "gain (dB)"] + [f"{who} {c}" for c in FIGURES for who in ("bicubic", "model")]
    where = ("every validation image, best weights" if summary else f"the {len(names)} images scored each epoch")
    sections = [
        ("Curves", image_html(curves_png(rows, bicubic), "training curves")),
        ("Epochs", '<div class="scroll">' + table_html(rows, [c for c in METRIC_COLUMNS if rows and c in rows[0]],
                                                       formats={}) + "</div>"),
        (f"Images, lowest gain first ({where})",
         '<div class="scroll">' + table_html(images, image_columns, signed=("gain (dB)",), table_id="images")
         + "</div>"),
        ("Settings", config_html(cfg)),
    ]
    write_report(run_dir / REPORT_NAME, f"run {run_dir.name}", f"{run_dir}", cards, sections, cases)
