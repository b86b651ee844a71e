"""Pictures of a run: the training curves and labelled LR | bicubic | SR | HR strips."""
import io

import cv2
import numpy as np




def _column(rows, name):
    """(epochs, values) of a metrics.csv column, rows where it is empty left out."""
    pairs = [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name) not in ("", None)]
    return [e for e, _ in pairs], [v for _, v in pairs]


def curves_png(rows, bicubic: dict = None) -> bytes:
    """rows: the metrics.csv rows (dicts); bicubic: its validation figures (psnr, score).
    PNG of four panels: training loss, validation PSNR and score beside bicubic, learning rate."""
    from matplotlib.figure import Figure      # no pyplot, no display: imported when first drawn (0.3 s)
    from matplotlib.ticker import MaxNLocator
    bicubic = bicubic or {}
    fig = Figure(figsize=(10, 7))
    axes = fig.subplots(2, 2)
    panels = [("train_loss", None, "training loss", "Loss"),
              ("val_psnr", "psnr", "validation PSNR (RGB, dB)", "Validation PSNR"),
              ("val_score", "score", "PSNR + 40 SSIM", "Validation score"),
              ("learning_rate", None, "learning rate", "Learning rate (at the epoch's end)")]
    for ax, (column, baseline, ylabel, title) in zip(axes.flat, panels):
        epochs, values = _column(rows, column)
        if values:
            ax.plot(epochs, values, marker=".", label="model")
        elif column.startswith("val_"):
            ax.text(0.5, 0.5, "no validation split\n(--val-fraction 0)", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
        if baseline and bicubic.get(baseline) is not None:
            ax.axhline(bicubic[baseline], color="grey", linestyle="--", label=f"bicubic {bicubic[baseline]:.3f}")
            ax.legend()
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # fixed margins: tight_layout measured every label's extent and took 0.6 s of a 0.9 s drawing
    # (left and wspace leave room for a loss axis's 5-digit ticks and its label)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.07, top=0.95, wspace=0.34, hspace=0.38)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def labelled_strip(panels, gap: int = 4) -> np.ndarray:
    """panels: [(label, uint8 (H, W, 3), PSNR in dB or None)], one height -> uint8 image:
    the panels side by side under a white band that names each (and gives its PSNR),
    the text made smaller where a panel is narrow."""
    height = panels[0][1].shape[0]
    line = max(16, min(28, height // 10))
    tiles = []
    for k, (label, image, psnr) in enumerate(panels):
        lines = [label, "" if psnr is None else f"{psnr:.2f} dB" if np.isfinite(psnr) else "= HR"]
        header = np.full((2 * line, image.shape[1], 3), 255, np.uint8)
        for n, text in enumerate(lines):
            scale = line / 32
            width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
            if width > image.shape[1] - 4:
                scale *= (image.shape[1] - 4) / width
            (width, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            cv2.putText(header, text, (max(2, (image.shape[1] - width) // 2), n * line + (line + text_h) // 2),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([header, image], axis=0))
        if k < len(panels) - 1:
            tiles.append(np.full((2 * line + height, gap, 3), 255, np.uint8))
    return np.concatenate(tiles, axis=1)


def comparison_strip(lr, sr, hr, scale: int, max_side: int = 256) -> np.ndarray:
    """lr (3, h, w), sr and hr (3, sh, sw) in [0, 1] -> uint8 image: labelled LR (nearest) |
    bicubic | SR | HR with each panel's PSNR, on a centre crop of at most max_side HR pixels."""
    from srx4.image.resize import resize_tensor
    from srx4.runs.html import case_crops
    bicubic = resize_tensor(lr[None].double().cpu(), scale)[0].float()
    side = min(max_side, hr.shape[1], hr.shape[2])
    crops = case_crops(lr, bicubic, sr, hr, scale, focus="centre", side=side)
    return labelled_strip(crops["panels"])
