"""What evaluate.py shows: the per-set table (Markdown) and the report page (report.html:
the table, every image beside bicubic with the lowest gain first, crops)."""
from pathlib import Path

import pandas as pd

from srx4.image.scoring import PAPER
from srx4.runs.html import table_html, write_report


def set_table(images: pd.DataFrame) -> pd.DataFrame:
    """One row per (set, model): images and the mean PSNR / SSIM on Y."""
    return (images.groupby(["set", "model"], sort=False)
            .agg(images=("image", "size"), psnr_y=("psnr_y", "mean"), ssim_y=("ssim_y", "mean")).reset_index())


def markdown(table: pd.DataFrame, tta: str = "") -> str:
    lines = ["| set | model | images | PSNR (Y, dB) | SSIM (Y) |", "|---|---|---|---|---|"]
    lines += [f"| {r.set} | {r.model}{tta if r.model != 'bicubic' else ''} | {r.images} | {r.psnr_y:.2f} | "
              f"{r.ssim_y:.4f} |" for r in table.itertuples()]
    return "\n".join(lines)


def write_page(path: Path, name: str, scale: int, table: pd.DataFrame, images: pd.DataFrame, cases):
    """report.html: the table, every image beside bicubic (lowest gain first), crops."""
    wide = images.pivot_table(index=["set", "image"], columns="model", values=["psnr_y", "ssim_y"], sort=False)
    wide.columns = [f"{who} {figure}" for figure, who in wide.columns]
    wide = wide.reset_index()
    model_column = next((c for c in wide if c.endswith("psnr_y") and not c.startswith("bicubic")), None)
    if model_column:
        wide.insert(2, "gain (dB)", wide[model_column] - wide["bicubic psnr_y"])
        wide = wide.sort_values("gain (dB)")
    cards = [(f"{r.set} {r.model}", f"{r.psnr_y:.2f} dB / {r.ssim_y:.4f}") for r in table.itertuples()]
    sections = [("Table", table_html(table.to_dict("records"), formats={"psnr_y": ".2f"})),
                ("Images" + (", lowest gain first" if model_column else ""),
                 '<div class="scroll">' + table_html(wide.to_dict("records"), signed=("gain (dB)",),
                                                     table_id="images") + "</div>")]
    write_report(path, f"evaluation of {name}", f"x{scale}, {PAPER.describe(scale)}", cards, sections, cases)
