"""The training run behind src/train.py: data -> model -> loop -> logs/<run>/.

`Trainer(config, device, rank, world, checkpoint).fit()`; config is TrainConfig as
a dict, checkpoint the loaded last.ckpt when resuming.
Rank 0 alone writes files. The sampler position, step and RNG states go into
last.ckpt, and every crop is keyed by (seed, epoch, index), so a killed and
resumed run ends with the same weights as an unbroken one.
"""
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from srx4 import distributed, paths
from srx4.checkpoint import (CHECKPOINT_NAME, WEIGHTS_NAME, load_model, load_state, rng_state,
                             save_checkpoint, save_weights, set_rng_state, unwrap, write_json)
from srx4.dataset import (EpochBatches, ImageCache, TrainPatches, WholeImages, collate_drop_none,
                          steps_per_epoch)
from srx4.device_data import DevicePatches, fits, image_bytes
from srx4.engine import learning_rate_at, to_float, train_step, validate
from srx4.infer import autocast_dtype
from srx4.models import Bicubic, build_model, count_parameters
from srx4.pairs import save_split, scan_pairs, split_pairs
from srx4.plots import plot_curves, save_comparison
from srx4.runlog import RunLog


class RunStopped(RuntimeError):
    """A run that cannot go on, for a reason the user can act on (printed as one line)."""


def model_config_of(cfg: dict) -> dict:
    if cfg["model"] == "srcnn":
        return {"name": "srcnn", "scale": cfg["scale"], "kernel_sizes": [int(k) for k in cfg["srcnn_kernels"].split("-")],
                "y_only": cfg["y_only"]}
    return {"name": "srresnet", "scale": cfg["scale"], "num_blocks": cfg["num_blocks"], "channels": cfg["channels"],
            "bicubic_residual": cfg["bicubic_residual"]}


class Trainer:
    def __init__(self, cfg: dict, device, rank: int = 0, world: int = 1, checkpoint: dict = None):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.is_main = rank == 0
        self.run_dir = self._run_dir(cfg)
        self.log = RunLog(self.run_dir, enabled=self.is_main)
        if checkpoint:
            self.log.load_rows(Path(cfg["resume"]).parent)
            self.log(f"resuming {cfg['resume']} at epoch {checkpoint['epoch'] + 1}, "
                     f"batch {checkpoint['batch_in_epoch']}, step {checkpoint['step']}")
        self._data(cfg, checkpoint)
        self._model(cfg, checkpoint)
        self.epoch = checkpoint["epoch"] if checkpoint else 0
        self.batch_in_epoch = checkpoint["batch_in_epoch"] if checkpoint else 0
        self.step = checkpoint["step"] if checkpoint else 0
        self.best = checkpoint["best"] if checkpoint else {"psnr": float("-inf"), "epoch": 0}
        self.bicubic = checkpoint["bicubic"] if checkpoint else None
        self.since_best = checkpoint["since_best"] if checkpoint else 0
        if checkpoint:
            set_rng_state(checkpoint["rng"])
        if self.is_main:
            write_json(self.run_dir / "config.json", cfg)

    def _run_dir(self, cfg):
        if cfg["resume"]:
            source = Path(cfg["resume"]).resolve().parent
            if os.access(source, os.W_OK):
                return source
            return paths.logs_dir() / f"{source.name}_resumed"   # e.g. an attached read-only Kaggle output
        return paths.logs_dir() / cfg["run"]

    def _data(self, cfg, checkpoint):
        pairs, hygiene = scan_pairs(cfg["data"], cfg["scale"])
        by_name = {p.name: p for p in pairs}
        if not pairs:
            reasons = "; ".join(f"{len(v)} {k}" for k, v in sorted(hygiene.problems.items())) or "empty folders"
            raise ValueError(f"{cfg['data']}: no usable image pairs ({reasons})")
        if checkpoint:
            split = checkpoint["split"]
        else:
            split = split_pairs([p.name for p in pairs], cfg["val_fraction"], cfg["seed"], cfg["data"])
            small = [n for n in split["train"] if min(by_name[n].lr_size) < cfg["patch_size"]]
            if small:  # too small to crop a patch from: validation only
                split["train"] = [n for n in split["train"] if n not in small]
                split["val"] = sorted(split["val"] + small)
                for n in small:
                    hygiene.add(f"smaller than the {cfg['patch_size']}px patch (validation only)", n)
        missing = [n for n in split["train"] + split["val"] if n not in by_name]
        if missing:
            raise FileNotFoundError(f"{cfg['data']}: {len(missing)} files of split.json are gone, e.g. {missing[0]}")
        if not split["train"]:
            raise ValueError(f"{cfg['data']}: no training pairs with an LR side >= patch size {cfg['patch_size']}")
        self.split = split
        if self.is_main:
            save_split(split, self.run_dir / "split.json")
        ram = None if cfg["ram_budget_gb"] < 0 else int(cfg["ram_budget_gb"] * (1 << 30))

        def caches(names, side):
            chosen = [by_name[n] for n in names]
            factor = 1 if side == "lr" else cfg["scale"]             # header sizes: LR, HR = scale x LR
            return ImageCache([getattr(p, f"{side}_path") for p in chosen],
                              [(w * factor, h * factor) for (w, h) in (p.lr_size for p in chosen)],
                              ram_budget=ram, cache_dir=cfg["cache_dir"] or None, desc=f"decode {side}")
        train_lr, train_hr = caches(split["train"], "lr"), caches(split["train"], "hr")
        val_lr, val_hr = caches(split["val"], "lr"), caches(split["val"], "hr")
        failures = {**train_lr.failures, **train_hr.failures, **val_lr.failures, **val_hr.failures}
        for path, reason in sorted(failures.items()):
            hygiene.add("undecodable (skipped and counted as dropped)", Path(path).name)
        self.log(hygiene.summary())
        self.log.write_hygiene(hygiene, {"split": {"train": len(split["train"]), "val": len(split["val"])}})
        self.log(f"split: {len(split['train'])} train, {len(split['val'])} val (seed {cfg['seed']})")
        self.train_set = TrainPatches(train_lr, train_hr, cfg["scale"], cfg["patch_size"], cfg["seed"],
                                      cfg["patches_per_image"])
        self.val_set = WholeImages(split["val"], val_lr, val_hr)
        self.device_patches = None
        nbytes = image_bytes(self.train_set)
        if cfg["device_data"] == "on" or (cfg["device_data"] == "auto" and fits(nbytes, self.device)):
            size = nbytes / 2**30
            try:
                self.device_patches = DevicePatches(self.train_set, self.device)
            except torch.OutOfMemoryError:
                raise RunStopped(f"the training images ({size:.1f} GiB) do not fit on {self.device}: "
                                 f"pass --device-data off") from None
            for cache in (train_lr, train_hr):  # the device holds them now
                cache.close()
            self.log(f"training images on {self.device} as uint8 ({size:.2f} GiB): crops and flips done there "
                     f"(--device-data off for DataLoader workers)")

    def _model(self, cfg, checkpoint):
        torch.manual_seed(cfg["seed"])
        self.model_config = model_config_of(cfg)
        model = build_model(self.model_config)
        if cfg["init_weights"] and not checkpoint:
            source, _ = load_model(cfg["init_weights"], expect={"name": cfg["model"], "scale": cfg["scale"]})
            load_state(model, source.state_dict(), cfg["init_weights"])
            self.log(f"initialised from {cfg['init_weights']}")
        if checkpoint:
            load_state(model, checkpoint["model"], cfg["resume"])
        cuda = self.device.type == "cuda"
        if cfg["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = cuda and not cfg["deterministic"]
        model = model.to(self.device)
        if cuda and cfg["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        self.plain_model = model
        self.log(f"model {self.model_config} ({count_parameters(model) / 1e6:.3f} M parameters) on {self.device}"
                 + (f" x {self.world} processes" if self.world > 1 else ""))
        if self.world > 1:
            ids = [self.device.index] if cuda else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = torch.compile(model) if cfg["compile"] and cuda else model
        # fused: one kernel for the whole update on CUDA, and no host sync under the fp16 GradScaler
        self.optimizer = torch.optim.Adam(self.plain_model.parameters(), lr=cfg["learning_rate"], fused=cuda or None)
        self.amp_dtype = autocast_dtype(self.device) if cfg["amp"] else None
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        if checkpoint:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.scaler is not None and checkpoint.get("scaler"):
                self.scaler.load_state_dict(checkpoint["scaler"])

    def save_last(self, epoch, batch_in_epoch):
        if not all(torch.isfinite(p).all() for p in self.plain_model.parameters()):
            raise RunStopped("non-finite weights: last checkpoint left as it was; lower --learning-rate")
        if not self.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, {
            "model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {}, "epoch": epoch,
            "batch_in_epoch": batch_in_epoch, "step": self.step, "best": self.best, "bicubic": self.bicubic,
            "since_best": self.since_best, "train_config": self.cfg, "model_config": self.model_config,
            "split": self.split, "rng": rng_state()})

    def _validate(self, model, desc):
        return validate(model, self.val_set, self.device, self.cfg["scale"], self.rank, self.world,
                        self.cfg["val_limit"], self.cfg["amp"], desc)

    def fit(self):
        cfg, log = self.cfg, self.log
        has_val = len(self.val_set) > 0
        if self.bicubic is None and has_val:
            self.bicubic, _ = self._validate(Bicubic(cfg["scale"]).to(self.device), "bicubic")
            log(f"bicubic on validation: PSNR {self.bicubic['psnr']:.3f} dB, score {self.bicubic['score']:.3f}")
        per_epoch = steps_per_epoch(len(self.train_set), cfg["batch_size"], self.world)
        total_steps = cfg["epochs"] * per_epoch
        workers = cfg["workers"] if cfg["workers"] >= 0 else (min(4, os.cpu_count() or 1) if self.device.type == "cuda" else 0)
        started, bad_in_row, stopped = time.time(), 0, None
        self.model.train()
        while self.epoch < cfg["epochs"] and stopped is None:
            epoch, epoch_start = self.epoch, time.time()
            sampler = EpochBatches(len(self.train_set), cfg["batch_size"], cfg["seed"], epoch,
                                   self.batch_in_epoch, self.rank, self.world)
            if self.device_patches is not None:
                loader = (self.device_patches.batch(keys) for keys in sampler)
            else:
                loader = torch.utils.data.DataLoader(self.train_set, batch_sampler=sampler, num_workers=workers,
                                                     collate_fn=collate_drop_none, pin_memory=self.device.type == "cuda")
            losses, dropped, skipped = [], 0, 0
            bar = tqdm(loader, total=len(sampler), desc=f"epoch {epoch + 1}/{cfg['epochs']}", leave=False,
                       disable=not self.is_main)
            for batch, n_dropped in bar:
                dropped += n_dropped
                if self.world > 1 and distributed.agree(batch is None, self.world, self.device):
                    # some rank lost its whole batch: every rank skips the step, or DDP's collectives hang
                    dropped += 0 if batch is None else batch[0].shape[0]
                    batch = None
                if batch is not None:
                    lr_imgs, hr_imgs = (to_float(t, self.device) for t in batch)   # (N,3,p,p), (N,3,sp,sp)
                    if self.device.type == "cuda" and cfg["channels_last"]:
                        lr_imgs = lr_imgs.contiguous(memory_format=torch.channels_last)
                    for group in self.optimizer.param_groups:
                        group["lr"] = learning_rate_at(self.step, total_steps, cfg["learning_rate"],
                                                       cfg["schedule"], cfg["warmup_steps"])
                    loss = train_step(self.model, self.optimizer, self.scaler, lr_imgs, hr_imgs, cfg["loss"],
                                      self.amp_dtype, self.world)
                    if loss is None:
                        skipped, bad_in_row = skipped + 1, bad_in_row + 1
                        if bad_in_row >= cfg["max_bad_steps"]:
                            raise RunStopped(f"{bad_in_row} non-finite losses in a row at step {self.step}: "
                                             f"stopped; {self.run_dir / CHECKPOINT_NAME} holds the last good state")
                    else:
                        losses.append(loss)
                        bad_in_row = 0
                        bar.set_postfix(loss=f"{loss:.4f}")
                self.step += 1
                self.batch_in_epoch += 1
                if cfg["checkpoint_every"] and self.step % cfg["checkpoint_every"] == 0:
                    self.save_last(epoch, self.batch_in_epoch)
                over = bool(cfg["time_limit"]) and time.time() - started > cfg["time_limit"] * 3600
                if (self.world == 1 or self.step % 10 == 0) and distributed.agree(over, self.world, self.device):
                    stopped = f"--time-limit of {cfg['time_limit']} h reached"
                    break
            if stopped:
                self.save_last(epoch, self.batch_in_epoch)
                break
            self._end_epoch(epoch, losses, dropped, skipped, has_val, epoch_start)
            if cfg["patience"] and self.since_best >= cfg["patience"]:
                stopped = f"no better validation PSNR for {cfg['patience']} epochs (--patience)"
        distributed.barrier(self.world)
        self._summary(stopped)

    def _end_epoch(self, epoch, losses, dropped, skipped, has_val, epoch_start):
        cfg = self.cfg
        distributed.broadcast_buffers(self.plain_model, self.world)  # every rank validates rank 0's BN stats
        metrics, first = self._validate(self.plain_model, "validate") if has_val else ({}, None)
        improved = (not has_val) or metrics["psnr"] > self.best["psnr"]
        if improved:
            self.best = {"psnr": metrics.get("psnr", float("nan")), "epoch": epoch + 1, **metrics}
            self.since_best = 0
            if self.is_main:
                save_weights(self.run_dir / WEIGHTS_NAME, self.plain_model, self.model_config)
        else:
            self.since_best += 1
        self.epoch, self.batch_in_epoch = epoch + 1, 0
        self.save_last(self.epoch, 0)
        mean_loss = sum(losses) / max(len(losses), 1)
        row = {"epoch": epoch + 1, "step": self.step, "train_loss": f"{mean_loss:.6f}",
               "learning_rate": f"{self.optimizer.param_groups[0]['lr']:.3g}", "dropped_samples": dropped,
               "skipped_steps": skipped, "seconds": f"{time.time() - epoch_start:.1f}",
               "bicubic_psnr": f"{self.bicubic['psnr']:.4f}" if self.bicubic else ""}
        row.update({f"val_{k}": f"{metrics[k]:.4f}" for k in ("psnr", "psnr_y", "ssim", "score") if k in metrics})
        self.log.add_row(row)
        text = (f"epoch {epoch + 1}/{cfg['epochs']} loss {mean_loss:.4f}"
                + (f" | val PSNR {metrics['psnr']:.3f} dB (Y {metrics['psnr_y']:.3f}) SSIM {metrics['ssim']:.4f} "
                   f"score {metrics['score']:.3f}" if has_val else "")
                + (" *best*" if improved and has_val else "")
                + (f" | dropped {dropped} samples" if dropped else "") + (f" | skipped {skipped} steps" if skipped else "")
                + f" | {time.time() - epoch_start:.0f}s")
        self.log(text)
        if self.is_main:
            plot_curves(self.log.rows, self.bicubic["psnr"] if self.bicubic else None, self.run_dir / "curves.png")
            if first is not None and cfg["sample_every"] and (epoch + 1) % cfg["sample_every"] == 0:
                save_comparison(*first, cfg["scale"], self.run_dir / "samples" / f"epoch_{epoch + 1:03d}.png")

    def _summary(self, stopped):
        if stopped:
            self.log(f"stopped early: {stopped}; resume with --resume {self.run_dir / CHECKPOINT_NAME}")
        if self.bicubic and self.best.get("psnr") is not None and self.best["epoch"]:
            gain = self.best["psnr"] - self.bicubic["psnr"]
            self.log(f"best validation PSNR {self.best['psnr']:.3f} dB at epoch {self.best['epoch']} vs bicubic "
                     f"{self.bicubic['psnr']:.3f} dB ({gain:+.3f} dB); score {self.best['score']:.3f} vs "
                     f"{self.bicubic['score']:.3f}")
        self.log(f"weights: {self.run_dir / WEIGHTS_NAME}  checkpoint: {self.run_dir / CHECKPOINT_NAME}")
