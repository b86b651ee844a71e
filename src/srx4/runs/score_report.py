"""What score.py shows: the summary lines on the terminal and the report page
(<name>_report.html: means per protocol, every image by gain over bicubic, crops)."""
from pathlib import Path

import pandas as pd

from srx4.runs.html import table_html, write_report


def summary_lines(table: pd.DataFrame, protocols, scale: int) -> list:
    lines = [f"{len(table)} images, x{scale}"]
    for protocol in protocols:
        columns = protocol.columns()
        lines.append(protocol.describe(scale))
        for prefix, label in (("", "model"), ("bicubic_", "bicubic")):
            if all(prefix + c in table for c in columns):
                means = table[[prefix + c for c in columns]].mean()
                lines.append(f"  {label:>8}: " + "  ".join(f"{c} {means[prefix + c]:.4f}" for c in columns))
    rank_by = "score" if "score" in table else protocols[0].columns()[0]
    lines.append(f"lowest {rank_by} first:" if len(table) <= 5 else f"the five lowest by {rank_by}:")
    for row in table.nsmallest(min(5, len(table)), rank_by).itertuples():
        lines.append(f"  {row.id:<30} {rank_by} {getattr(row, rank_by):.3f}")
    return lines


def write_page(path: Path, source: Path, table: pd.DataFrame, protocols, scale: int, cases):
    """The report page: means per protocol, every image (lowest gain first), crops."""
    means, cards = [], []
    for protocol in protocols:
        for prefix, label in (("", "model"), ("bicubic_", "bicubic")):
            columns = [prefix + c for c in protocol.columns()]
            if all(c in table for c in columns):
                means.append({"protocol": protocol.name, "predictions": label, "images": len(table),
                              **{c: table[prefix + c].mean() for c in protocol.columns()}})
    headline = protocols[0].columns()[-1]
    cards.append((f"model {headline}", f"{table[headline].mean():.3f}"))
    if f"bicubic_{headline}" in table:
        cards.append((f"bicubic {headline}", f"{table[f'bicubic_{headline}'].mean():.3f}"))
    key = protocols[0].columns()[0]
    images = table.copy()
    if f"bicubic_{key}" in images:
        images.insert(1, "gain (dB)", images[key] - images[f"bicubic_{key}"])
        images = images.sort_values("gain (dB)")
    else:
        images = images.sort_values(headline)
    sections = [("Means", table_html(means, formats={})),
                ("Images, lowest gain first" if "gain (dB)" in images else f"Images, lowest {headline} first",
                 '<div class="scroll">' + table_html(images.to_dict("records"), signed=("gain (dB)",),
                                                     table_id="images") + "</div>")]
    description = "; ".join(p.describe(scale) for p in protocols)
    write_report(path, f"scores of {source.name}", f"{source} · x{scale} · {description}", cards, sections, cases)
