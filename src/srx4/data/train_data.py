"""The data side of a training run: pairs -> split -> one image cache -> datasets.

`TrainData(cfg, run_dir, log, rank, world, device, split=None)` scans the data
folder, splits it (or takes the split of a resumed checkpoint), decodes every
image once into one `ImageCache` (shared by the DDP ranks) and exposes:
- `train_set` (`TrainPatches`), `val_set` (`WholeImages`), `split`, `hygiene`;
- `val_subset`: the fixed, seeded `--val-limit` images scored every epoch;
- `guard_set` / `guard_indices`: what the end-of-run bicubic check scores
  (the whole validation set, or some training images when there is none);
- `device_patches`: the training images on the GPU when they fit (else None);
- `loader()`: one persistent DataLoader for the whole run, moved from epoch
  to epoch by its sampler (`EpochBatches.set_epoch`).
"""
from collections import Counter
import os

import numpy as np
import torch

from srx4.core import layout
from srx4.core.errors import DataError, MissingData, RunStopped
from srx4.data.patches import EpochBatches, TrainPatches, WholeImages, collate_drop_none
from srx4.data.device_patches import DevicePatches, fits, image_bytes
from srx4.data.cache import CacheView, ImageCache
from srx4.data.pairs import describe_split, save_split, scan_pairs, split_pairs

GUARD_TRAIN_IMAGES = 16   # no validation split: the bicubic check scores this many training images


def worker_count(requested: int, device_type: str, world: int, cpus: int = None) -> int:
    """DataLoader workers per rank: as asked, else none on a CPU (the cores train), and on
    GPUs the cores shared between the ranks, one left to each rank's main process."""
    if requested >= 0:
        return requested
    if device_type != "cuda":
        return 0
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(8, cpus // max(world, 1) - 1))


class TrainData:
    def __init__(self, cfg, run_dir, log, rank: int, world: int, device, split: dict = None):
        self.cfg, self.log, self.rank, self.world, self.device = cfg, log, rank, world, device
        pairs, hygiene = scan_pairs(cfg.data, cfg.scale)
        by_name = {p.name: p for p in pairs}
        self.frame_size = Counter(p.lr_size for p in pairs).most_common(1)[0][0] if pairs else None  # (w, h)
        if not pairs:
            reasons = "; ".join(f"{len(v)} {k}" for k, v in sorted(hygiene.problems.items())) or "empty folders"
            raise DataError(f"{cfg.data}: no usable image pairs ({reasons})")
        if split is None:
            split = split_pairs([p.name for p in pairs], cfg.val_fraction, cfg.seed, cfg.data)
            small = [n for n in split["train"] if min(by_name[n].lr_size) < cfg.patch_size]
            if small:  # too small to crop a patch from: validation only
                split["train"] = [n for n in split["train"] if n not in small]
                split["val"] = sorted(split["val"] + small)
                for n in small:
                    hygiene.note(f"smaller than the {cfg.patch_size}px patch (validation only)", n)
        missing = [n for n in split["train"] + split["val"] if n not in by_name]
        if missing:
            raise MissingData(f"{cfg.data}: {len(missing)} files of split.json are gone, e.g. {missing[0]}")
        if not split["train"]:
            raise DataError(f"{cfg.data}: no training pairs with an LR side >= patch size {cfg.patch_size}")
        self.split = split
        if rank == 0:
            save_split(split, run_dir / layout.SPLIT)

        # one cache for every image: train LR, train HR, val LR, val HR (HR header size = scale x LR)
        names = split["train"] + split["val"]
        lr_sizes = [by_name[n].lr_size for n in names]
        s = cfg.scale
        cache = ImageCache([by_name[n].lr_path for n in names] + [by_name[n].hr_path for n in names],
                           lr_sizes + [(w * s, h * s) for (w, h) in lr_sizes],
                           ram_budget=None if cfg.ram_budget_gb < 0 else int(cfg.ram_budget_gb * (1 << 30)),
                           cache_dir=cfg.cache_dir or None, desc="decode", shared=world > 1,
                           builder=rank == 0, log=log)
        self.cache = cache
        t, v = len(split["train"]), len(split["val"])
        n = len(names)
        train_lr, train_hr = CacheView(cache, range(t)), CacheView(cache, range(n, n + t))
        val_lr, val_hr = CacheView(cache, range(t, n)), CacheView(cache, range(n + t, 2 * n))
        # a pair with an undecodable side is left out (named once, by the file that failed)
        failed_pairs = sorted({k % n for k, path in enumerate(cache.paths) if path in cache.failures})
        for k in failed_pairs:
            side = "lr" if cache.paths[k] in cache.failures else "hr"
            hygiene.add("undecodable (skipped and counted as dropped)", f"{side}/{names[k]}")
        hygiene.used = n - len(failed_pairs)
        self.hygiene = hygiene
        log(hygiene.summary())
        log.write_hygiene(hygiene, {"split": {"train": t, "val": v}})
        log(describe_split(split))
        self.train_set = TrainPatches(train_lr, train_hr, s, cfg.patch_size, cfg.seed, cfg.patches_per_image,
                                      cfg.colour_augment)
        self.val_set = WholeImages(split["val"], val_lr, val_hr)
        limit = cfg.val_limit
        if v and limit and limit < v:   # a fixed seeded subset, in name order (same sizes batch together)
            chosen = np.random.default_rng([cfg.seed, 11]).choice(v, size=limit, replace=False)
            self.val_subset = sorted(int(i) for i in chosen)
        else:
            self.val_subset = list(range(v))
        if v:
            final = cfg.final_limit
            if final and final < v:
                chosen = np.random.default_rng([cfg.seed, 12]).choice(v, size=final, replace=False)
                self.guard_indices = sorted(int(i) for i in chosen)
            else:
                self.guard_indices = list(range(v))
            self.guard_set, self.guard_on = self.val_set, "validation"
        else:
            count = min(GUARD_TRAIN_IMAGES, t)
            chosen = np.random.default_rng([cfg.seed, 13]).choice(t, size=count, replace=False)
            self.guard_set = WholeImages(split["train"], train_lr, train_hr)
            self.guard_indices, self.guard_on = sorted(int(i) for i in chosen), "training images (no validation split)"
        self._device_data(cfg)
        self._loader, self.sampler = None, None

    def _device_data(self, cfg):
        self.device_patches = None
        nbytes = image_bytes(self.train_set)
        if cfg.device_data == "on" or (cfg.device_data == "auto" and fits(nbytes, self.device)):
            size = nbytes / 2**30
            try:
                self.device_patches = DevicePatches(self.train_set, self.device)
            except torch.cuda.OutOfMemoryError:   # torch.OutOfMemoryError needs torch 2.5
                raise RunStopped(f"the training images ({size:.1f} GiB) do not fit on {self.device}: "
                                 f"pass --device-data off") from None
            self.log(f"training images on {self.device} as uint8 ({size:.2f} GiB): crops and flips done there "
                     f"(--device-data off for DataLoader workers)")

    def epoch_batches(self, epoch: int, start: int):
        """An iterable of (batch or None, dropped) for this rank, from sample `start` of `epoch`."""
        cfg = self.cfg
        if self.sampler is None:
            self.sampler = EpochBatches(len(self.train_set), cfg.batch_size, cfg.seed, epoch, start,
                                        self.rank, self.world)
        self.sampler.set_epoch(epoch, start)
        if self.device_patches is not None:
            return (self.device_patches.batch(keys) for keys in self.sampler)
        if self._loader is None:     # built once: its workers live across epochs
            workers = worker_count(cfg.workers, self.device.type, self.world)
            self._loader = torch.utils.data.DataLoader(
                self.train_set, batch_sampler=self.sampler, num_workers=workers, collate_fn=collate_drop_none,
                pin_memory=self.device.type == "cuda", persistent_workers=workers > 0)
            self.log(f"data: {workers} DataLoader worker(s) per process, kept across epochs"
                     if workers else "data: loaded in the main process")
        return self._loader

    def close(self):
        """Stop the workers and release the cache (the last process deletes its file)."""
        loader, self._loader = self._loader, None
        if loader is not None and getattr(loader, "_iterator", None) is not None:
            loader._iterator._shutdown_workers()
        self.device_patches = None
        self.cache.close()
