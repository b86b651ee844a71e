"""PSNR and SSIM as the SR papers and the competition compute them.

Pure functions on torch tensors, computed in float64 by default (`dtype=`
float32 for validation on a GPU, where float64 runs at a fraction of the rate),
on whatever device the tensors are on.
Inputs are float images in [0, 1], shaped (C, H, W) or (N, C, H, W) with C = 3
(RGB) or C = 1 (a grey image, scored on its own grey values).

- `psnr(sr, hr, crop_border, y_channel)`: dB on the [0, 255] scale; with
  `y_channel` RGB goes to BT.601 Y first (MATLAB's rgb2ycbcr); grey stays grey.
- `ssim(...)`: the SR tables' form (Wang et al.: 11x11 Gaussian, sigma 1.5,
  valid region, on [0, 255]), as in the MATLAB code the papers used.
- `ssim_skimage(...)`: scikit-image's `structural_similarity` default form
  (7x7 uniform window, sample covariance, data_range 1, mean over channels):
  the form the competition score uses.
- `competition_score = PSNR_rgb + 40 * SSIM_skimage_rgb`.
"""
import torch

# BT.601 as MATLAB's rgb2ycbcr: RGB in [0, 1] -> Y in [16, 235], Cb and Cr in [16, 240] (on [0, 255])
YCBCR = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
YCBCR_OFFSET = (16.0, 128.0, 128.0)


def _batched(x: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    x = x.to(dtype)
    return x.unsqueeze(0) if x.dim() == 3 else x


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) Y in [0, 1] (16/255 .. 235/255)."""
    w = torch.tensor(YCBCR[0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x * w).sum(dim=1, keepdim=True) + YCBCR_OFFSET[0]) / 255.0


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> BT.601 YCbCr in [0, 1] (SRCNN's Y-only mode)."""
    m = torch.tensor(YCBCR, dtype=x.dtype, device=x.device) / 255
    offset = torch.tensor(YCBCR_OFFSET, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return torch.einsum("ij,njhw->nihw", m, x) + offset


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_ycbcr`."""
    m = torch.linalg.inv(torch.tensor(YCBCR, dtype=torch.float64) / 255).to(x)
    offset = torch.tensor(YCBCR_OFFSET, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return torch.einsum("ij,njhw->nihw", m, x - offset)


def _prepare(sr, hr, crop_border: int, y_channel: bool, dtype=torch.float64):
    sr, hr = _batched(sr, dtype), _batched(hr, dtype)
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: sr {tuple(sr.shape)} vs hr {tuple(hr.shape)}")
    if y_channel and sr.shape[1] == 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    if crop_border:
        c = crop_border
        sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
    return sr, hr


def psnr(sr, hr, crop_border: int = 0, y_channel: bool = False, dtype=torch.float64) -> torch.Tensor:
    """Per-image PSNR in dB, shape (N,). Identical images give inf."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel, dtype)
    mse = ((sr - hr) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1.0 / mse)


def _filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Depthwise 'valid' 2-D filter of (N, C, H, W) by the separable window taps x taps
    (k,): a k-tap pass down the columns, then along the rows (2k, not k^2, per pixel),
    each a product of a sliding-window view with the taps (faster than conv2d on a CPU)."""
    k = taps.numel()
    taps = taps.to(x)
    x = x.unfold(2, k, 1) @ taps            # (N, C, H-k+1, W)
    return x.unfold(3, k, 1) @ taps         # (N, C, H-k+1, W-k+1)


def _gaussian_window(size=11, sigma=1.5) -> torch.Tensor:
    """The 1-D taps of the papers' Gaussian window (their outer product is the 2-D window)."""
    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(sr, hr, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """SSIM as in the SR papers' MATLAB code, per image (N,), mean over channels."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    sr, hr = sr * 255, hr * 255
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _gaussian_window()
    mu_x, mu_y = _filter(sr, window), _filter(hr, window)
    var_x = _filter(sr * sr, window) - mu_x ** 2
    var_y = _filter(hr * hr, window) - mu_y ** 2
    cov = _filter(sr * hr, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def ssim_skimage(sr, hr, crop_border: int = 0, y_channel: bool = False, data_range: float = 1.0,
                 dtype=torch.float64) -> torch.Tensor:
    """scikit-image's `structural_similarity(..., data_range=1, channel_axis=...)`, per image (N,).

    skimage filters with reflect padding and then crops (win-1)/2 pixels, so the
    mean it reports covers exactly the 'valid' region used here."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel, dtype)
    win = 7
    window = torch.full((win,), 1.0 / win, dtype=dtype)
    cov_norm = win * win / (win * win - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ux, uy = _filter(sr, window), _filter(hr, window)
    vx = cov_norm * (_filter(sr * sr, window) - ux * ux)
    vy = cov_norm * (_filter(hr * hr, window) - uy * uy)
    vxy = cov_norm * (_filter(sr * hr, window) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)


def competition_score(psnr_rgb, ssim_rgb):
    """The GNR638 leaderboard metric: PSNR (RGB, dB) + 40 * SSIM (RGB, skimage form)."""
    return psnr_rgb + 40 * ssim_rgb


METRIC_NAMES = ("psnr", "psnr_y", "ssim", "score")


def image_metrics(sr, hr, scale: int, dtype=torch.float64) -> torch.Tensor:
    """Every validation number per image, (N, 4) on the tensors' device, no host sync:
    RGB PSNR, Y PSNR (crop = scale), skimage-form RGB SSIM, the competition score
    (`METRIC_NAMES`). PSNR is capped at 100 dB (identical images)."""
    p_rgb = psnr(sr, hr, dtype=dtype).clamp(max=100)
    s_rgb = ssim_skimage(sr, hr, dtype=dtype)
    p_y = psnr(sr, hr, crop_border=scale, y_channel=True, dtype=dtype).clamp(max=100)
    return torch.stack([p_rgb, p_y, s_rgb, competition_score(p_rgb, s_rgb)], dim=1)


def all_metrics(sr, hr, scale: int, dtype=torch.float64) -> dict:
    """`image_metrics` averaged over the batch, as Python floats."""
    return dict(zip(METRIC_NAMES, image_metrics(sr, hr, scale, dtype).mean(dim=0).tolist()))
