"""Training losses (train.py --loss): what the network is pushed toward.

- l1: mean |SR - HR| (the default; SRResNet/EDSR practice for PSNR).
- mse: mean (SR - HR)^2 (PSNR's own measure; blurrier in practice).
- charbonnier: mean sqrt((SR - HR)^2 + eps^2), eps = 1e-3: L1 with a smooth minimum.
- l1+ssim: L1 + w (1 - SSIM), SSIM as the competition scores it (RGB, 7x7 uniform
  window, sample covariance, the border of 3 left out: scikit-image's), for
  leaderboards that add 40 x SSIM to PSNR. w = --ssim-weight.
- l1+vgg: L1 + w L1(VGG19 conv5_4 features), w = --vgg-weight, the VGG's ImageNet
  weights from --vgg-weights (srx4/train/perceptual.py): sharper textures, lower PSNR.

    criterion = loss_fn("l1+ssim", ssim_weight=0.1)
    loss = criterion(sr, hr)           # (N, 3, H, W) float in [0, 1] -> scalar
"""
import functools

import torch
import torch.nn.functional as F

from srx4.core.errors import FlagError
from srx4.image.metrics import SSIM_C1 as C1, SSIM_C2 as C2

CHARBONNIER_EPS = 1e-3
SSIM_WINDOW = 7


def charbonnier(sr, hr, eps: float = CHARBONNIER_EPS):
    return torch.sqrt((sr - hr).pow(2) + eps * eps).mean()


def ssim_uniform(sr, hr, window: int = SSIM_WINDOW):
    """Mean SSIM of (N, C, H, W) in [0, 1], differentiable: scikit-image's structural_similarity
    (data_range 1, uniform window, sample covariance) over the valid window positions."""
    pool = functools.partial(F.avg_pool2d, kernel_size=window, stride=1)
    mu_x, mu_y = pool(sr), pool(hr)
    cov_norm = window * window / (window * window - 1)
    var_x = cov_norm * (pool(sr * sr) - mu_x * mu_x)
    var_y = cov_norm * (pool(hr * hr) - mu_y * mu_y)
    cov_xy = cov_norm * (pool(sr * hr) - mu_x * mu_y)
    ssim_map = ((2 * mu_x * mu_y + C1) * (2 * cov_xy + C2)) / ((mu_x ** 2 + mu_y ** 2 + C1) * (var_x + var_y + C2))
    return ssim_map.mean()


def l1_ssim(sr, hr, ssim_weight: float):
    return F.l1_loss(sr, hr) + ssim_weight * (1 - ssim_uniform(sr, hr))


def vgg_loss(vgg_weights, vgg_weight):
    from srx4.train.perceptual import VggLoss      # torchvision, only when asked for
    return VggLoss(vgg_weights, vgg_weight)


# --loss NAME -> a function of the loss options (--ssim-weight, --vgg-weight, --vgg-weights) giving
# the criterion (sr, hr) -> scalar: the registry
LOSSES = {
    "l1": lambda o: F.l1_loss,
    "mse": lambda o: F.mse_loss,
    "charbonnier": lambda o: charbonnier,
    "l1+ssim": lambda o: functools.partial(l1_ssim, ssim_weight=o["ssim_weight"]),
    "l1+vgg": lambda o: vgg_loss(o["vgg_weights"], o["vgg_weight"]),
}


def loss_fn(name: str, ssim_weight: float = 0.1, vgg_weight: float = 0.1, vgg_weights: str = ""):
    """The criterion for --loss `name`: a function (sr, hr) -> scalar tensor (l1+vgg: a module,
    to be moved to the model's device)."""
    if name not in LOSSES:
        raise FlagError(f"--loss {name!r}: expected one of {', '.join(LOSSES)}")
    return LOSSES[name]({"ssim_weight": ssim_weight, "vgg_weight": vgg_weight, "vgg_weights": vgg_weights})
