"""The data side of a training run: pairs -> split -> one image cache -> datasets.

`TrainData(cfg, run_dir, log, rank, world, device, split=None)` runs four named
steps: plan the split (seeded, or a resumed checkpoint's), open the images (decoded
once into one `ImageCache` shared by the DDP ranks, or streamed), choose the
evaluation sets, place the training images (GPU or DataLoader). It exposes:
- `train_set` (`TrainPatches`), `val_set` (`WholeImages`), `split`, `hygiene`;
- `val_subset`: the fixed, seeded `--val-limit` images scored every epoch;
- `final_check_set` / `final_check_indices` / `final_check_on`: what the final check
  at the end of the run scores against bicubic (--final-limit validation images, or
  some training images when there is no validation split);
- `device_patches`: the training images on the GPU when they fit (else None);
- `loader()`: one persistent DataLoader for the whole run, moved from epoch
  to epoch by its sampler (`EpochBatches.set_epoch`).
"""
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from srx4.core import layout
from srx4.core.errors import DataError, MissingData, RunStopped
from srx4.data.patches import EpochBatches, TrainPatches, WholeImages, collate_drop_none
from srx4.data.device_patches import DevicePatches, fits, image_bytes
from srx4.core.io import atomic_write_text
from srx4.core.system import available_ram_bytes
from srx4.data.cache import DISK_MARGIN, CacheView, ImageCache, default_cache_dir
from srx4.data.stream import WINDOW, FilePairs, StreamEpoch, StreamWindows, choose_loading
from srx4.core.progress import progress
from srx4.data.pair_check import REASON as PAIR_REASON, PairCheck, measure
from srx4.data.pairs import describe_split, save_split, scan_pairs, split_pairs

FINAL_CHECK_TRAIN_IMAGES = 16   # no validation split: the final check scores this many training images
UNDECODABLE = "undecodable (skipped and counted as dropped)"
LOADING = {"ram": "decoded once into a cache in RAM", "disk": "decoded once into a cache file on disk",
           "stream": "streamed: decoded in the workers each epoch, no cache"}
# the random streams of the seeded subsets (numpy's SeedSequence([seed, stream])): fixed, so a
# resumed or re-run run scores the same images
VAL_SUBSET_STREAM, FINAL_CHECK_STREAM, FINAL_CHECK_TRAIN_STREAM = 11, 12, 13


def seeded_subset(count: int, size: int, seed: int, stream: int) -> list:
    """`size` of range(count) chosen by (seed, stream), in index order (same-size images
    batch together); all of them when size is 0 or not under count."""
    if not size or size >= count:
        return list(range(count))
    chosen = np.random.default_rng([seed, stream]).choice(count, size=size, replace=False)
    return sorted(int(i) for i in chosen)


def worker_count(requested: int, device_type: str, world: int, cpus: int = None) -> int:
    """DataLoader workers per rank: as asked, else none on a CPU (the cores train), and on
    GPUs the cores shared between the ranks, one left to each rank's main process."""
    if requested >= 0:
        return requested
    if device_type != "cuda":
        return 0
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(8, cpus // max(world, 1) - 1))


def figures_text(figures) -> str:
    up, down = figures
    return f"{up:.1f} dB upscaled" + ("" if down is None else f", {down:.1f} dB averaged down")


class TrainData:
    def __init__(self, cfg, run_dir, log, rank: int, world: int, device, split: dict = None):
        self.cfg, self.log, self.rank, self.world, self.device = cfg, log, rank, world, device
        self.run_dir = Path(run_dir)
        self.cache, self.stream, self._loader, self.sampler = None, None, None, None
        pairs, self.hygiene = scan_pairs(cfg.data, cfg.scale)
        self.split, by_name = self._plan_split(pairs, split)
        train_lr, train_hr, val_lr, val_hr = self._open_images(by_name)
        log(self.hygiene.summary())
        log(self.pair_check.line())
        self._write_hygiene()
        log(describe_split(self.split))
        self.train_set = self.stream if self.stream is not None else TrainPatches(
            train_lr, train_hr, cfg.scale, cfg.patch_size, cfg.seed, cfg.patches_per_image, cfg.colour_augment)
        self.val_set = WholeImages(self.split["val"], val_lr, val_hr)
        self._choose_evaluation_sets(train_lr, train_hr)
        self._place_training_images()

    def _plan_split(self, pairs, split):
        """(split, pairs by name): the resumed run's split, else a seeded one (split.json);
        pairs too small to cut a patch from go to validation."""
        cfg, hygiene = self.cfg, self.hygiene
        if not pairs:
            reasons = "; ".join(f"{len(v)} {k}" for k, v in sorted(hygiene.problems.items())) or "empty folders"
            raise DataError(f"{cfg.data}: no usable image pairs ({reasons})")
        by_name = {p.name: p for p in pairs}
        self.frame_size = Counter(p.lr_size for p in pairs).most_common(1)[0][0]       # (w, h), the most common
        if split is None:
            split = split_pairs([p.name for p in pairs], cfg.val_fraction, cfg.seed, cfg.data)
            small = [n for n in split["train"] if min(by_name[n].lr_size) < cfg.patch_size]
            if small:
                split["train"] = [n for n in split["train"] if n not in small]
                split["val"] = sorted(split["val"] + small)
                for n in small:
                    hygiene.note(f"smaller than the {cfg.patch_size}px patch (validation only)", n)
        missing = [n for n in split["train"] + split["val"] if n not in by_name]
        if missing:
            raise MissingData(f"{cfg.data}: {len(missing)} files of split.json are gone, e.g. {missing[0]}")
        if not split["train"]:
            raise DataError(f"{cfg.data}: no training pairs with an LR side >= patch size {cfg.patch_size}")
        if self.rank == 0:
            save_split(split, self.run_dir / layout.SPLIT)
        return split, by_name

    def _open_images(self, by_name):
        """(train LR, train HR, val LR, val HR) views: decoded once into a cache in RAM or on
        disk, or streamed when neither holds them (data/stream.py's choose_loading)."""
        cfg, split = self.cfg, self.split
        lr_sizes = [by_name[name].lr_size for name in split["train"] + split["val"]]
        self.pair_check = PairCheck(cfg.min_pair_psnr)
        decoded_bytes = sum(3 * w * h * (1 + cfg.scale ** 2) for w, h in lr_sizes)
        self.loading, why = choose_loading(decoded_bytes, self._ram_budget(), self._disk_budget(), self.world,
                                           cfg.loading)
        self.log(f"data path: {LOADING[self.loading]} ({why})")
        if self.loading == "stream":
            return self._streamed(split, by_name)
        return self._cached(split, by_name, lr_sizes, self.world, self.rank)

    def _choose_evaluation_sets(self, train_lr, train_hr):
        """The images scored every epoch (`val_subset`: --val-limit of them, seeded) and those
        of the final check at the end (`final_check_set` / `final_check_indices`: --final-limit
        validation images, or some training images when there is no validation split)."""
        cfg, names = self.cfg, self.split
        val, train = len(names["val"]), len(names["train"])
        self.val_subset = seeded_subset(val, cfg.val_limit, cfg.seed, VAL_SUBSET_STREAM)
        if val:
            self.final_check_set, self.final_check_on = self.val_set, "validation"
            self.final_check_indices = seeded_subset(val, cfg.final_limit, cfg.seed, FINAL_CHECK_STREAM)
        else:
            self.final_check_set = WholeImages(names["train"], train_lr, train_hr)
            self.final_check_on = "training images (no validation split)"
            self.final_check_indices = seeded_subset(train, min(FINAL_CHECK_TRAIN_IMAGES, train), cfg.seed,
                                                     FINAL_CHECK_TRAIN_STREAM)

    def _place_training_images(self):
        """The training images on the GPU when they fit (--device-data), else None."""
        self.device_patches = None
        if self.stream is None:
            self._device_data(self.cfg)
        elif self.cfg.device_data == "on":
            raise DataError("--device-data on: the training images do not fit the memory budget (streaming path); "
                            "pass --device-data auto or off")

    def _ram_budget(self) -> int:
        gb = self.cfg.ram_budget_gb
        return available_ram_bytes() // 2 if gb < 0 else int(gb * (1 << 30))

    def _disk_budget(self) -> int:
        gb = self.cfg.disk_budget_gb
        if gb >= 0:
            return int(gb * (1 << 30))
        folder = Path(self.cfg.cache_dir) if self.cfg.cache_dir else default_cache_dir()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return max(0, shutil.disk_usage(folder).free - DISK_MARGIN)

    def _cached(self, split, by_name, lr_sizes, world, rank):
        """One cache for every image (train LR, train HR, val LR, val HR), every pair checked
        once it is decoded. Returns the four views, dirty and undecodable pairs reading None."""
        cfg, log, hygiene = self.cfg, self.log, self.hygiene
        names = split["train"] + split["val"]
        t, n, s = len(split["train"]), len(names), cfg.scale
        cache = ImageCache([by_name[n_].lr_path for n_ in names] + [by_name[n_].hr_path for n_ in names],
                           lr_sizes + [(w * s, h * s) for (w, h) in lr_sizes],
                           ram_budget=self._ram_budget() if self.loading == "ram" else 0,
                           cache_dir=cfg.cache_dir or None, desc="decode", shared=world > 1,
                           builder=rank == 0, log=log, quiet=cfg.quiet)
        self.cache = cache
        # a pair with an undecodable side is left out (named once, by the file that failed)
        failed_pairs = sorted({k % n for k, path in enumerate(cache.paths) if path in cache.failures})
        for k in failed_pairs:
            side = "lr" if cache.paths[k] in cache.failures else "hr"
            hygiene.add(UNDECODABLE, f"{side}/{names[k]}")
        # and so is a pair whose LR is not its HR's downscale (a swapped or mismatched file)
        failed = set(failed_pairs)
        dirty = self._check_pairs(names, [k for k in range(n) if k not in failed])
        for k in dirty:
            hygiene.add(PAIR_REASON, f"{names[k]} ({figures_text(self.pair_check.measured[names[k]])})")
        hygiene.used = n - len(failed_pairs) - len(dirty)
        # both leave the split too (split.json, last.ckpt): no epoch cuts patches from them to drop
        bad = failed | set(dirty)
        train, val = [k for k in range(t) if k not in bad], [k for k in range(t, n) if k not in bad]
        if bad:
            split["train"], split["val"] = [names[k] for k in train], [names[k] for k in val]
            if not train:
                raise DataError(f"{cfg.data}: every training pair is undecodable or dirty (hygiene.json)")
            if rank == 0:
                save_split(split, self.run_dir / layout.SPLIT)
        return (CacheView(cache, train), CacheView(cache, [n + k for k in train]),
                CacheView(cache, val), CacheView(cache, [n + k for k in val]))

    def _streamed(self, split, by_name):
        """No cache: the training pairs decoded by the workers a window at a time (srx4.data.stream),
        the validation pairs read when scored; each pair checked when first decoded."""
        cfg = self.cfg
        train, val = split["train"], split["val"]
        self.stream = StreamWindows(train, [by_name[n].lr_path for n in train], [by_name[n].hr_path for n in train],
                                    cfg.scale, cfg.patch_size, cfg.seed, cfg.patches_per_image, cfg.colour_augment,
                                    cfg.min_pair_psnr)
        self._found = {}            # name -> reason, for the pairs found bad while streaming
        self._stream_index = {name: i for i, name in enumerate(train)}
        self._known = {}            # training image index -> its pair figures, once measured (StreamEpoch skips them)
        self.hygiene.used = len(train) + len(val)

        def files(names):
            return FilePairs(names, [by_name[n].lr_path for n in names], [by_name[n].hr_path for n in names],
                             [by_name[n].lr_size for n in names], cfg.scale, cfg.min_pair_psnr, self._streamed_report)
        train_files, val_files = files(train), files(val)
        return train_files.lr, train_files.hr, val_files.lr, val_files.hr

    def _streamed_report(self, psnr: dict, failures: dict):
        """A window's findings, merged into the run's pair check and hygiene."""
        for name, figure in psnr.items():
            if name in self._stream_index:
                self._known[self._stream_index[name]] = figure
            if not self.pair_check.record(name, figure) and name not in self._found:
                self._found[name] = PAIR_REASON
                self.hygiene.add(PAIR_REASON, f"{name} ({figures_text(figure)})")
        for name, failure in failures.items():
            if name not in self._found:
                self._found[name] = UNDECODABLE
                self.hygiene.add(UNDECODABLE, name)
                self.log(f"left out while streaming: {failure}")
        self.hygiene.used = len(self.split["train"]) + len(self.split["val"]) - len(self._found)

    def _write_hygiene(self):
        if self.stream is not None and self.world > 1:
            self._share_findings()
        self.log.write_hygiene(self.hygiene, {"split": {"train": len(self.split["train"]), "val": len(self.split["val"])},
                                              "loading": self.loading, "pair_check": self.pair_check.summary()})

    def _share_findings(self):
        """Streaming under DDP each rank decodes its own share of the pairs: every rank leaves what it
        found in the run folder, rank 0 reads the others' (as of their last epoch end) into hygiene.json."""
        mine = self.run_dir / layout.PAIR_FINDINGS.format(rank=self.rank)
        atomic_write_text(mine, json.dumps({"psnr": {n: list(v) for n, v in self.pair_check.measured.items()},
                                            "found": self._found}))
        if self.rank != 0:
            return
        for other in range(1, self.world):
            try:
                found = json.loads((self.run_dir / layout.PAIR_FINDINGS.format(rank=other)).read_text())
            except (OSError, ValueError):
                continue                                   # that rank has not reached an epoch end yet
            self._streamed_report({n: tuple(v) for n, v in found["psnr"].items()},
                                  {n: reason for n, reason in found["found"].items() if reason == UNDECODABLE})

    def _check_pairs(self, names, indices) -> list:
        """Score every decoded pair's bicubic upscale against its HR (threads: torch lets go of
        the GIL); returns the indices of the pairs left out."""
        n, s, cache = len(names), self.cfg.scale, self.cache
        one = lambda k: measure(cache[k], cache[n + k], s, self.cfg.min_pair_psnr)   # noqa: E731
        with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
            figures = list(progress(pool.map(one, indices), total=len(indices), desc="pair check", unit="pair",
                                    leave=False, quiet=self.cfg.quiet or len(indices) < 50))
        return [k for k, psnr in zip(indices, figures) if not self.pair_check.record(names[k], psnr)]

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
        if self.stream is not None:
            return self._stream_batches(epoch, start)
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

    def _stream_batches(self, epoch: int, start: int):
        cfg = self.cfg
        if self.sampler is None:
            self.sampler = StreamEpoch(len(self.stream.names), cfg.patches_per_image, cfg.batch_size, cfg.seed,
                                       self.rank, self.world, known=self._known)
            self.sampler.on_report = self._streamed_report
        self.sampler.set_epoch(epoch, start)
        if self._loader is None:
            workers = worker_count(cfg.workers, self.device.type, self.world)
            self._loader = torch.utils.data.DataLoader(
                self.stream, batch_size=None, sampler=self.sampler, num_workers=workers,
                pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                prefetch_factor=2 if workers else None)
            self.log(f"data: streamed by {workers} DataLoader worker(s) per process, {WINDOW} pairs a window, "
                     f"{cfg.patches_per_image} patches from each decoded image" if workers else
                     f"data: streamed in the main process, {WINDOW} pairs a window")
        found = len(self._found)

        def batches():
            yield from self.sampler.batches(self._loader)
            if len(self._found) != found or epoch == 0:
                self.log(self.pair_check.line())
            self._write_hygiene()
        return batches()

    def close(self):
        """Stop the workers and release the cache (the last process deletes its file)."""
        loader, self._loader = self._loader, None
        if loader is not None and getattr(loader, "_iterator", None) is not None:
            loader._iterator._shutdown_workers()
        self.device_patches = None
        if self.cache is not None:
            self.cache.close()
