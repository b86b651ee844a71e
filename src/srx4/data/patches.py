"""The training and validation datasets over the image cache, the sampler, the collate.

- The images come decoded from `srx4.data.cache.ImageCache` (RAM, or one
  memory-mapped file shared by the DDP ranks); None = failed to decode.
- `TrainPatches[(epoch, i)]` -> (lr (3, p, p), hr (3, s*p, s*p)) uint8 tensors: an
  aligned random crop with flips and 90-degree rotations (and, with `colour`,
  a random channel order and inversion: `recolour`), its randomness a hash
  of (seed, epoch, i) (`crop_draws`), so results do not depend on workers,
  batching or resuming.
  None when the image failed to load.
- `WholeImages[i]` -> (name, lr (3, h, w), hr (3, s*h, s*w)) for validation.
- `EpochBatches` yields the batches of one epoch in a seeded order, from a
  given sample position on (resume mid-epoch), each global batch of
  batch_size x world samples split between the DDP ranks, so a position in
  samples means the same thing for any number of processes.
- `collate_drop_none` drops None samples and reports how many it dropped.
"""
import numpy as np
import torch

from srx4.data.cache import ImageCache


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a uint64 array -> well-scrambled uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


# channel orders for the colour augmentation (drawn uniformly)
CHANNEL_ORDERS = np.array([(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)])


def crop_draws(seed: int, epoch: int, index, lr_heights, lr_widths, patch_size: int) -> np.ndarray:
    """The random choices for patches `index` (N,) of an epoch, from images of LR size
    (lr_heights, lr_widths) (N,): int64 (N, 7) of top, left, hflip, vflip, transpose,
    invert and a channel order (an index into CHANNEL_ORDERS).

    A counter-based hash of (seed, epoch, index) alone: the same for any batch,
    worker or resume, vectorised over a batch, and shared by the CPU path
    (`TrainPatches`) and the GPU path (`srx4.data.device_patches`), which so cut exactly
    the same patches."""
    index = np.asarray(index, dtype=np.uint64).reshape(-1)
    with np.errstate(over="ignore"):
        key = _mix(_mix(_mix(np.full_like(index, seed)) ^ np.uint64(epoch)) ^ index)   # (N,)
        streams = _mix(key[:, None] + np.uint64(0x9E3779B97F4A7C15) * np.arange(1, 8, dtype=np.uint64))
    uniform = (streams >> np.uint64(11)).astype(np.float64) * 2.0 ** -53                  # (N, 7) in [0, 1)
    room = np.stack(np.broadcast_arrays(lr_heights, lr_widths), axis=-1).reshape(-1, 2) - patch_size + 1
    draws = np.empty(uniform.shape, dtype=np.int64)
    draws[:, :2] = np.floor(uniform[:, :2] * room).astype(np.int64)                        # top, left
    draws[:, 2:6] = uniform[:, 2:6] < 0.5                                  # three flips, inversion
    draws[:, 6] = np.floor(uniform[:, 6] * len(CHANNEL_ORDERS))            # channel order
    return draws


def recolour(lr: np.ndarray, hr: np.ndarray, invert: bool, order: int):
    """The colour augmentation of an LR/HR pair (H, W, 3) uint8: channels reordered and,
    with `invert`, 255 - x. Exact for any degradation that treats channels alike and
    commutes with x -> 255 - x (resizing, blur), and it shows the model dark and bright,
    red and blue content, so one game's palette or a frame's brightness cannot become
    what the network (and its BatchNorm statistics) takes for granted."""
    perm = CHANNEL_ORDERS[order]
    lr, hr = lr[..., perm], hr[..., perm]
    if invert:
        lr, hr = 255 - lr, 255 - hr
    return lr, hr


def augment(lr: np.ndarray, hr: np.ndarray, hflip: bool, vflip: bool, transpose: bool):
    """The same flips and transpose (a 90-degree rotation with the flips) applied to an LR/HR pair (H, W, C)."""
    if hflip:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    if vflip:
        lr, hr = lr[::-1], hr[::-1]
    if transpose:
        lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
    return lr, hr


def hwc_to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class TrainPatches(torch.utils.data.Dataset):
    """Aligned random LR/HR crops; index with (epoch, i)."""

    def __init__(self, lr_cache: ImageCache, hr_cache: ImageCache, scale: int, patch_size: int, seed: int,
                 patches_per_image: int = 1, colour: bool = False):
        self.lr_cache, self.hr_cache = lr_cache, hr_cache
        self.scale, self.patch_size, self.seed = scale, patch_size, seed
        self.patches_per_image, self.colour = patches_per_image, colour

    def __len__(self):
        return len(self.lr_cache) * self.patches_per_image

    def __getitem__(self, key):
        epoch, i = key                      # i: patch index; image i % number of images
        lr_img, hr_img = self.lr_cache[i % len(self.lr_cache)], self.hr_cache[i % len(self.lr_cache)]
        if lr_img is None or hr_img is None:
            return None
        p, s = self.patch_size, self.scale
        top, left, *flips, invert, order = crop_draws(self.seed, epoch, i, lr_img.shape[0], lr_img.shape[1],
                                                      p)[0].tolist()
        lr = lr_img[top:top + p, left:left + p]
        hr = hr_img[s * top:s * (top + p), s * left:s * (left + p)]
        lr, hr = augment(lr, hr, *flips)
        if self.colour:
            lr, hr = recolour(lr, hr, invert, order)
        return hwc_to_chw(lr), hwc_to_chw(hr)  # uint8 (3, p, p), (3, sp, sp)


class WholeImages(torch.utils.data.Dataset):
    """Whole validation images: (name, lr (3, h, w), hr (3, sh, sw)) uint8, or None."""

    def __init__(self, names, lr_cache: ImageCache, hr_cache: ImageCache):
        self.names, self.lr_cache, self.hr_cache = names, lr_cache, hr_cache

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        lr_img, hr_img = self.lr_cache[i], self.hr_cache[i]
        if lr_img is None or hr_img is None:
            return None
        return self.names[i], hwc_to_chw(lr_img), hwc_to_chw(hr_img)

    def lr_size(self, i):
        """(H, W, 3) of LR image i from its header, without decoding (for batching by size)."""
        return self.lr_cache.shape(i)


class EpochBatches(torch.utils.data.Sampler):
    """Batches of (epoch, index) keys for one rank: a permutation seeded by (seed, epoch),
    read from sample position `start` on in global batches of batch_size x world, of
    which rank r takes the r-th slice. The position in samples is independent of the
    process count, so a run saved by 2 ranks resumes in 1 on the same remaining samples.
    An epoch with fewer samples than a global batch wraps around to fill one."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank=0, world=1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.set_epoch(epoch, start)

    def set_epoch(self, epoch: int, start: int = 0):
        """Move to `epoch` from sample position `start` (a persistent DataLoader keeps this sampler)."""
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(self.n)
        step = self.batch_size * self.world
        if len(order) < step:
            order = np.resize(order, step)
        count = max(0, (len(order) - start) // step)
        r0, r1 = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        self.batches = [[(epoch, int(i)) for i in order[start + b * step:start + (b + 1) * step][r0:r1]]
                        for b in range(count)]
        self.epoch, self.start = epoch, start

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def samples_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    """Samples one epoch trains on, all ranks together (whole global batches only)."""
    step = batch_size * world
    return max(1, n // step) * step


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return samples_per_epoch(n, batch_size, world) // (batch_size * world)


def collate_drop_none(samples):
    """Stack the samples that loaded; returns (batch or None, number dropped)."""
    kept = [s for s in samples if s is not None]
    dropped = len(samples) - len(kept)
    if not kept:
        return None, dropped
    return torch.utils.data.default_collate(kept), dropped
