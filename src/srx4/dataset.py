"""Decode-once image cache, the training and validation datasets, sampler, collate.

- `ImageCache` decodes every image once to uint8 (H, W, 3): in RAM when it
  fits the budget, else into one memory-mapped file on disk (the real GNR638
  train set is ~28 GB decoded). A file that fails to decode is cached as None.
- `TrainPatches[(epoch, i)]` -> (lr (3, p, p), hr (3, s*p, s*p)) uint8 tensors: an
  aligned random crop with flips and 90-degree rotations, its randomness a hash
  of (seed, epoch, i) (`crop_draws`), so results do not depend on workers,
  batching or resuming.
  None when the image failed to load.
- `WholeImages[i]` -> (name, lr (3, h, w), hr (3, s*h, s*w)) for validation.
- `EpochBatches` yields the batches of one epoch in a seeded order, from a
  given batch on (resume mid-epoch), sharded by rank for DDP.
- `collate_drop_none` drops None samples and reports how many it dropped.
"""
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from srx4.images import ImageError, read_image


def available_ram_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class ImageCache:
    """uint8 RGB images decoded once; `cache[i]` is (H, W, 3) or None if undecodable.

    sizes: (width, height) per path from the headers, used to lay out the disk cache."""

    def __init__(self, paths, sizes, ram_budget: int = None, cache_dir: str = None, desc="decode", workers=None):
        self.paths = list(paths)
        self.failures = {}  # path -> reason
        shapes = [(h, w, 3) for (w, h) in sizes]
        total = sum(h * w * 3 for h, w, _ in shapes)
        budget = available_ram_bytes() // 2 if ram_budget is None else ram_budget
        self.on_disk = total > budget
        self._arrays = [None] * len(self.paths)
        self._mm, self._mm_path, self._layout = None, None, None
        if self.on_disk:
            cache_dir = cache_dir or tempfile.gettempdir()
            os.makedirs(cache_dir, exist_ok=True)
            fd, self._mm_path = tempfile.mkstemp(dir=cache_dir, prefix="srx4-cache-", suffix=".u8")
            os.close(fd)
            offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
            self._layout = [(int(offsets[i]), shapes[i]) for i in range(len(shapes))]
            self._valid = np.zeros(len(shapes), dtype=bool)
            mm = np.memmap(self._mm_path, dtype=np.uint8, mode="w+", shape=(max(total, 1),))
        workers = workers or min(8, os.cpu_count() or 1)

        def load(i):
            try:
                img = read_image(self.paths[i])
            except ImageError as err:
                return i, None, str(err)
            if img.shape != shapes[i]:
                return i, None, f"{self.paths[i]}: decoded size {img.shape} differs from its header"
            return i, img, None

        with ThreadPoolExecutor(workers) as pool:
            for i, img, error in tqdm(pool.map(load, range(len(self.paths))), total=len(self.paths),
                                      desc=desc, unit="img", leave=False, disable=len(self.paths) < 50):
                if error:
                    self.failures[self.paths[i]] = error
                elif self.on_disk:
                    start, shape = self._layout[i]
                    mm[start:start + img.size] = img.reshape(-1)
                    self._valid[i] = True
                else:
                    self._arrays[i] = img
        if self.on_disk:
            mm.flush()
            del mm

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if not self.on_disk:
            return self._arrays[i]
        if not self._valid[i]:
            return None
        if self._mm is None:  # opened lazily, once per process (DataLoader workers too)
            self._mm = np.memmap(self._mm_path, dtype=np.uint8, mode="r")
        start, shape = self._layout[i]
        return self._mm[start:start + int(np.prod(shape))].reshape(shape)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    def close(self):
        """Free the images (RAM or the disk file); the cache is unusable afterwards."""
        self._arrays = [None] * len(self.paths)
        self._mm = None
        if self._mm_path and os.path.exists(self._mm_path):
            os.unlink(self._mm_path)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a uint64 array -> well-scrambled uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def crop_draws(seed: int, epoch: int, index, lr_heights, lr_widths, patch_size: int) -> np.ndarray:
    """The random choices for patches `index` (N,) of an epoch, from images of LR size
    (lr_heights, lr_widths) (N,): int64 (N, 5) of top, left, hflip, vflip, transpose.

    A counter-based hash of (seed, epoch, index) alone: the same for any batch,
    worker or resume, vectorised over a batch, and shared by the CPU path
    (`TrainPatches`) and the GPU path (`srx4.device_data`), which so cut exactly
    the same patches."""
    index = np.asarray(index, dtype=np.uint64).reshape(-1)
    with np.errstate(over="ignore"):
        key = _mix(_mix(_mix(np.full_like(index, seed)) ^ np.uint64(epoch)) ^ index)   # (N,)
        streams = _mix(key[:, None] + np.uint64(0x9E3779B97F4A7C15) * np.arange(1, 6, dtype=np.uint64))
    uniform = (streams >> np.uint64(11)).astype(np.float64) * 2.0 ** -53                  # (N, 5) in [0, 1)
    room = np.stack(np.broadcast_arrays(lr_heights, lr_widths), axis=-1).reshape(-1, 2) - patch_size + 1
    draws = np.empty(uniform.shape, dtype=np.int64)
    draws[:, :2] = np.floor(uniform[:, :2] * room).astype(np.int64)                        # top, left
    draws[:, 2:] = uniform[:, 2:] < 0.5                                                    # the three flips
    return draws


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
                 patches_per_image: int = 1):
        self.lr_cache, self.hr_cache = lr_cache, hr_cache
        self.scale, self.patch_size, self.seed = scale, patch_size, seed
        self.patches_per_image = patches_per_image

    def __len__(self):
        return len(self.lr_cache) * self.patches_per_image

    def __getitem__(self, key):
        epoch, i = key                      # i: patch index; image i % number of images
        lr_img, hr_img = self.lr_cache[i % len(self.lr_cache)], self.hr_cache[i % len(self.lr_cache)]
        if lr_img is None or hr_img is None:
            return None
        p, s = self.patch_size, self.scale
        top, left, *flips = crop_draws(self.seed, epoch, i, lr_img.shape[0], lr_img.shape[1], p)[0].tolist()
        lr = lr_img[top:top + p, left:left + p]
        hr = hr_img[s * top:s * (top + p), s * left:s * (left + p)]
        lr, hr = augment(lr, hr, *flips)
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


class EpochBatches(torch.utils.data.Sampler):
    """Batches of (epoch, index) keys: a permutation seeded by (seed, epoch), this
    rank's shard of it (rank::world, padded by wrapping so ranks take equal steps),
    cut into batches, starting at batch `start`."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank=0, world=1):
        order = np.random.default_rng([seed, epoch, 7]).permutation(n)
        per_rank = -(-n // world)
        order = np.resize(order, per_rank * world)[rank::world]
        drop_last = len(order) >= batch_size
        count = len(order) // batch_size if drop_last else 1
        self.batches = [[(epoch, int(i)) for i in order[b * batch_size:(b + 1) * batch_size]] for b in range(count)]
        self.start = start

    def __len__(self):
        return len(self.batches) - self.start

    def __iter__(self):
        return iter(self.batches[self.start:])


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    per_rank = -(-n // world)
    return per_rank // batch_size if per_rank >= batch_size else 1


def collate_drop_none(samples):
    """Stack the samples that loaded; returns (batch or None, number dropped)."""
    kept = [s for s in samples if s is not None]
    dropped = len(samples) - len(kept)
    if not kept:
        return None, dropped
    return torch.utils.data.default_collate(kept), dropped
