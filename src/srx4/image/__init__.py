"""Pixels: decoding and writing images (codec: the one pixel convention), the
MATLAB-exact bicubic resize, metrics (PSNR, SSIM, BT.601) and scoring protocols.
May import: srx4.core."""
