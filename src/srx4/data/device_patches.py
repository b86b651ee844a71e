"""The training set held on the GPU as uint8, with crops and flips done there.

`DevicePatches(train_patches, device)` copies every training image of a
`TrainPatches` into one flat uint8 buffer per side on `device`.
`batch(keys)` then returns what the DataLoader path (`TrainPatches` +
`collate_drop_none`) returns for the same (epoch, i) keys, bit for bit:
((lr (N, 3, p, p), hr (N, 3, sp, sp)) uint8 on the device, dropped). The crop
offsets and flips come from the same per-key hash (`crop_draws`); only the
pixel copy moves to the device, as one gather per side per batch. That replaces
N crops, a collate, pinning and a host-to-device copy per step, and frees the
DataLoader's CPU cores.

`fits(image_bytes(train_patches), device)` says whether the buffers fit in half
the free GPU memory (the trainer's `--device-data auto`).
"""
import numpy as np
import torch

from srx4.core import gpu_memory
from srx4.data.patches import CHANNEL_ORDERS, TrainPatches, crop_draws


def image_bytes(patches: TrainPatches) -> int:
    """Decoded bytes of the training images, LR + HR."""
    return sum(img.size for cache in (patches.lr_cache, patches.hr_cache)
               for img in (cache[i] for i in range(len(cache))) if img is not None)


def fits(nbytes: int, device: torch.device, share: float = 0.5) -> bool:
    """Whether `nbytes` fit in `share` of the GPU memory this process may still use
    (within `--gpu-memory-gb`: srx4.gpu_memory); never on a CPU."""
    if device.type != "cuda":
        return False
    return nbytes <= share * gpu_memory.free_bytes(device)


class FlatImages:
    """Images (H, W, 3) uint8 packed into one flat buffer on a device; None = missing."""

    def __init__(self, images, device):
        sizes = [0 if img is None else img.size for img in images]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        widths = [0 if img is None else img.shape[1] for img in images]
        self.offsets = torch.from_numpy(offsets).to(device)                 # (images,)
        self.widths = torch.tensor(widths, dtype=torch.int64).to(device)     # (images,)
        self.buffer = torch.empty(max(sum(sizes), 1), dtype=torch.uint8, device=device)
        # made once: a tensor built from host data in crops() would be a blocking copy every step
        self.orders = torch.as_tensor(CHANNEL_ORDERS, device=device)                  # (orders, 3)
        self.channels = torch.arange(3, device=device).view(1, 3, 1, 1)
        for img, start, size in zip(images, offsets, sizes):
            if size:  # np.array: a private, writable copy (memory-mapped caches are read-only)
                self.buffer[start:start + size].copy_(torch.from_numpy(np.array(img).reshape(-1)))

    def crops(self, where: torch.Tensor, size: int, factor: int = 1, colour: bool = False) -> torch.Tensor:
        """One gather: crops (N, 3, size, size). `where` (N, 8) int64 on the device:
        image, top, left, hflip, vflip, transpose, invert, channel order (top and left
        in LR pixels, times `factor` here), flipped and transposed as `dataset.augment`
        does and, with `colour`, recoloured as `dataset.recolour` does."""
        image, top, left, hflip, vflip, transpose, invert, order = (c.view(-1, 1, 1) for c in where.unbind(1))
        steps = torch.arange(size, device=self.buffer.device)
        rows, cols = steps.view(1, size, 1), steps.view(1, 1, size)
        y = torch.where(transpose.bool(), cols, rows)   # transposed: output (u, v) reads (v, u)
        x = torch.where(transpose.bool(), rows, cols)
        y = torch.where(vflip.bool(), size - 1 - y, y)                       # (N, size, size)
        x = torch.where(hflip.bool(), size - 1 - x, x)
        pixel = self.offsets[image] + ((factor * top + y) * self.widths[image] + (factor * left + x)) * 3
        channel = self.orders[order.view(-1)].view(-1, 3, 1, 1) if colour else self.channels   # (N or 1, 3, 1, 1)
        out = self.buffer[pixel.unsqueeze(1) + channel]                      # (N, 3, size, size)
        if colour:
            out = torch.where(invert.view(-1, 1, 1, 1).bool(), 255 - out, out)
        return out


class DevicePatches:
    """`TrainPatches` with its images on `device`; `batch(keys)` like the DataLoader's."""

    def __init__(self, patches: TrainPatches, device):
        self.scale, self.patch_size, self.seed = patches.scale, patches.patch_size, patches.seed
        self.patches_per_image, self.colour = patches.patches_per_image, patches.colour
        self.device = torch.device(device)
        lr_imgs = [patches.lr_cache[i] for i in range(len(patches.lr_cache))]
        hr_imgs = [patches.hr_cache[i] for i in range(len(patches.hr_cache))]
        self.valid = np.array([a is not None and b is not None for a, b in zip(lr_imgs, hr_imgs)])
        self.lr_heights = np.array([img.shape[0] if ok else 0 for img, ok in zip(lr_imgs, self.valid)])
        self.lr_widths = np.array([img.shape[1] if ok else 0 for img, ok in zip(lr_imgs, self.valid)])
        self.lr = FlatImages([img if ok else None for img, ok in zip(lr_imgs, self.valid)], self.device)
        self.hr = FlatImages([img if ok else None for img, ok in zip(hr_imgs, self.valid)], self.device)
        self.images = len(lr_imgs)

    def __len__(self):
        return self.images * self.patches_per_image

    def batch(self, keys):
        """keys: [(epoch, i), ...] of one epoch -> ((lr, hr) uint8 on the device, or None; dropped)."""
        epoch = keys[0][0]
        assert all(e == epoch for e, _ in keys), "a batch comes from one epoch"
        index = np.array([i for _, i in keys], dtype=np.int64)
        index = index[self.valid[index % self.images]]        # samples of undecodable images are dropped
        dropped = len(keys) - len(index)
        if not len(index):
            return None, dropped
        image = index % self.images
        draws = crop_draws(self.seed, epoch, index, self.lr_heights[image], self.lr_widths[image], self.patch_size)
        where = np.concatenate([image[:, None], draws], axis=1)  # (N, 8): image, crop, flips, invert, order
        where = torch.from_numpy(where)
        if self.device.type == "cuda":      # pinned: the one small copy a step is truly asynchronous
            where = where.pin_memory()
        where = where.to(self.device, non_blocking=True)
        lr = self.lr.crops(where, self.patch_size, colour=self.colour)                          # (N, 3, p, p)
        hr = self.hr.crops(where, self.scale * self.patch_size, factor=self.scale, colour=self.colour)  # (N, 3, sp, sp)
        return (lr, hr), dropped
