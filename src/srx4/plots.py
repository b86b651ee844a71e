"""Pictures of a run: the training curves and LR | bicubic | SR | HR comparisons."""
import io

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from srx4.images import atomic_write_bytes, to_uint8, write_png  # noqa: E402
from srx4.imresize import resize_tensor  # noqa: E402


def plot_curves(rows, bicubic_psnr, path):
    """rows: the metrics.csv rows (dicts). Writes loss and validation PSNR per epoch."""
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    psnrs = [float(r["val_psnr"]) for r in rows if r.get("val_psnr") not in ("", None)]
    if psnrs:
        ax_psnr.plot(epochs[-len(psnrs):], psnrs, marker=".", label="model")
        if bicubic_psnr is not None:
            ax_psnr.axhline(bicubic_psnr, color="grey", linestyle="--", label=f"bicubic {bicubic_psnr:.2f} dB")
        ax_psnr.legend()
    ax_psnr.set(xlabel="epoch", ylabel="validation PSNR (RGB, dB)", title="Validation PSNR")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def comparison_strip(lr, sr, hr, scale: int, max_side: int = 256) -> np.ndarray:
    """lr (3, h, w), sr and hr (3, sh, sw) in [0, 1] -> uint8 image: LR (nearest) | bicubic | SR | HR,
    on a centre crop of at most max_side HR pixels."""
    side_h, side_w = min(max_side, hr.shape[1]) // scale, min(max_side, hr.shape[2]) // scale
    top, left = (lr.shape[1] - side_h) // 2, (lr.shape[2] - side_w) // 2
    lr_crop = lr[:, top:top + side_h, left:left + side_w]
    hr_box = (slice(None), slice(top * scale, (top + side_h) * scale), slice(left * scale, (left + side_w) * scale))
    nearest = lr_crop.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    bicubic = resize_tensor(lr[None].double(), scale)[0].float().clamp(0, 1)[hr_box]
    gap = torch.ones(3, side_h * scale, 4)
    tiles = [nearest, gap, bicubic, gap, sr[hr_box], gap, hr[hr_box]]
    return to_uint8(torch.cat([t.float().cpu() for t in tiles], dim=2))


def save_comparison(lr, sr, hr, scale: int, path):
    write_png(path, comparison_strip(lr, sr, hr, scale))
