"""The training run behind src/train.py: data -> model -> loop -> logs/<run>/.

`Trainer(config, device, rank, world, checkpoint).fit()`; config is a TrainConfig
(srx4.train.config), checkpoint the loaded last.ckpt when resuming.
Rank 0 alone writes files. Positions are kept in samples (all ranks together),
so a run saved by two processes resumes in one at the same point of the
schedule and of the epoch's order; every crop is keyed by (seed, epoch, index),
so a killed and resumed run ends with the same weights as an unbroken one.
At the end the best weights are scored on the whole validation set and checked
against bicubic: a model worse than bicubic is reported loudly, never quietly.
"""
import hashlib
import shutil
from dataclasses import asdict
import time
from pathlib import Path

import torch

from srx4.core import distributed, paths
from srx4.core.errors import RunStopped
from srx4.train.config import TrainConfig
from srx4.runs.checkpoint import CHECKPOINT_NAME, rng_state, save_checkpoint, set_rng_state
from srx4.models.weights import MODEL_CONFIG_NAME, WEIGHTS_NAME, load_model, load_state, save_weights, unwrap
from srx4.core.io import file_sha256, write_json
from srx4.data.patches import samples_per_epoch
from srx4.train.ema import WeightAverage
from srx4.train.losses import loss_fn
from srx4.train.step import BatchNormGuard, learning_rate_at, refresh_batchnorm, train_step
from srx4.image.codec import to_float
from srx4.train.validate import validate
from srx4.predict.inference import predict_estimate_line, prepare_model, supported_dtype
from srx4.core.system import training_dtype
from srx4.models import Bicubic, build_model, count_parameters, model_config_from_flags
from srx4.models.base import checkpoint_activations
from srx4.core.progress import progress
from srx4.runs.run_report import RunViews
from srx4.runs.runlog import SUMMARY_NAME, RunLog, bicubic_warning
from srx4.data.train_data import TrainData


REFRESH_EPOCH = 2**31 - 1
SELECT_LABELS = {"psnr": "PSNR", "score": "score (PSNR + 40 SSIM)"}   # --select: what picks the best weights


def run_dir_for(cfg: TrainConfig) -> Path:
    """Where a run writes: its own folder, or `<run>_resumed` when resuming from a
    read-only one (an attached Kaggle output)."""
    if cfg.resume:
        source = Path(cfg.resume).resolve().parent
        return paths.logs_dir() / f"{source.name}_resumed" if paths.read_only(source) else source
    return paths.logs_dir() / cfg.run


class Trainer:
    def __init__(self, cfg: TrainConfig, device, rank: int = 0, world: int = 1, checkpoint: dict = None):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.created = time.time()
        self.is_main = rank == 0
        self.run_dir = run_dir_for(cfg)
        self.log = RunLog(self.run_dir, enabled=self.is_main)
        self.log("settings: " + " ".join(f"{k}={v}" for k, v in asdict(cfg).items() if v not in ("", None)))
        if checkpoint:
            self._carry_over(Path(cfg.resume).resolve().parent)
        self.data = TrainData(cfg, self.run_dir, self.log, rank, world, device,
                              checkpoint["split"] if checkpoint else None)
        self._model(cfg, checkpoint)
        state = checkpoint or {}
        self.epoch = state.get("epoch", 0)
        self.samples_in_epoch = state.get("samples_in_epoch", 0)
        self.samples_seen = state.get("samples_seen", 0)
        self.step = self.samples_seen // (cfg.batch_size * world)     # this process's steps
        self.select = cfg.select     # the validation figure that picks the best weights
        self.best = state.get("best", {self.select: float("-inf"), "epoch": 0})
        self.bicubic = state.get("bicubic")
        self.bicubic_images = state.get("bicubic_images", {})    # name -> figures, for the report
        self.since_best = state.get("since_best", 0)
        self.skipped_total = state.get("skipped_steps", 0)     # steps not applied (non-finite loss or gradients)
        if checkpoint:
            set_rng_state(checkpoint.get("rng", {}))
            self.log(f"resuming {cfg.resume} at epoch {self.epoch + 1}, sample {self.samples_in_epoch} of the "
                     f"epoch ({self.samples_seen} seen, {world} process(es) now); learning rate "
                     f"{self.learning_rate():.6g}")
        if self.is_main:
            write_json(self.run_dir / "config.json", asdict(cfg))
        self.views = RunViews(self.run_dir, cfg, self.log, enabled=self.is_main)

    def _carry_over(self, source: Path):
        """Resuming into a new folder: bring the best weights and the rows so far along,
        so the new folder has weights even if no later epoch beats them."""
        self.log.load_rows(source)
        if source != self.run_dir and self.is_main:
            for name in (WEIGHTS_NAME, MODEL_CONFIG_NAME, SUMMARY_NAME):
                if (source / name).is_file() and not (self.run_dir / name).exists():
                    shutil.copyfile(source / name, self.run_dir / name)
            self.log(f"resuming from read-only {source}: writing to {self.run_dir} (its best weights copied)")

    def _model(self, cfg, checkpoint):
        torch.manual_seed(cfg.seed)
        if checkpoint:       # the model the checkpoint holds, whatever built it first
            self.model_config = checkpoint.get("model_config") or model_config_from_flags(asdict(cfg))
            model = build_model(self.model_config, checkpoint["model"])
            load_state(model, checkpoint["model"], cfg.resume)
        elif cfg.init_weights:   # the model the weights were trained as (train.py checked the flags)
            model, self.model_config = load_model(cfg.init_weights, expect={"scale": cfg.scale})
            model.train()
            self.log(f"initialised from {cfg.init_weights}: its model {self.model_config}")
        else:
            self.model_config = model_config_from_flags(asdict(cfg))
            model = build_model(self.model_config)
        cuda = self.device.type == "cuda"
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = cuda and not cfg.deterministic
        if cfg.activation_checkpointing:
            blocks = checkpoint_activations(model)
            self.log(f"activation checkpointing: {blocks} blocks recompute their activations in the backward pass"
                     if blocks else "activation checkpointing: this model names no blocks to checkpoint; off")
        model = model.to(self.device)
        if cuda and cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.plain_model = model
        self.log(f"model {self.model_config} ({count_parameters(model) / 1e6:.3f} M parameters) on {self.device}"
                 + (f" x {self.world} processes" if self.world > 1 else ""))
        if self.world > 1:
            ids = [self.device.index] if cuda else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = torch.compile(model, mode=cfg.compile_mode) if cfg.compile and cuda else model
        # fused: one kernel for the whole update on CUDA, and no host sync under the fp16 GradScaler
        self.optimizer = torch.optim.Adam(self.plain_model.parameters(), lr=cfg.learning_rate, fused=cuda or None)
        self.amp_dtype = training_dtype(self.device, cfg.amp_dtype) if cfg.amp else None
        # ask the model itself: a DDP wrapper does not carry spandrel's supports_half
        if self.amp_dtype is not None and supported_dtype(self.plain_model, self.amp_dtype) is None:
            self.log(f"{self.model_config.get('architecture', cfg.model)} does not run in {self.amp_dtype}: fp32")
            self.amp_dtype = None
        fp16 = self.amp_dtype == torch.float16
        self.scaler = (torch.amp.GradScaler(self.device.type, init_scale=cfg.grad_scale_init)
                       if fp16 else None)
        where = (f"compute capability {'.'.join(map(str, torch.cuda.get_device_capability(self.device)))}"
                 if cuda else "CPU autocast")
        if cuda or self.amp_dtype is not None:
            self.log(f"mixed precision: {self.amp_dtype or 'off (fp32)'}{' with a GradScaler' if fp16 else ''} "
                     f"({where}; --amp-dtype {cfg.amp_dtype})")
        self.bn_guard = BatchNormGuard(self.plain_model)    # statistics of a skipped step's forward are undone
        if checkpoint:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.scaler is not None and checkpoint.get("scaler"):
                self.scaler.load_state_dict(checkpoint["scaler"])
        self.criterion = loss_fn(cfg.loss, cfg.ssim_weight)
        self.ema = WeightAverage(self.plain_model, cfg.ema) if cfg.ema > 0 else None
        if self.ema is not None:
            if checkpoint and checkpoint.get("ema"):
                self.ema.load_state_dict(checkpoint["ema"])
            elif checkpoint:
                self.log("the checkpoint has no weight average (--ema): one starts from its weights now")
            self.log(f"validating and keeping an average of the weights (--ema {cfg.ema}; the decay warms up, "
                     f"{self.ema.decay_now():.3f} now)")

    @property
    def eval_model(self):
        """What is validated, selected and saved: the weight average when --ema is on."""
        return self.ema.model if self.ema is not None else self.plain_model

    # -- positions ---------------------------------------------------------------------------
    def _total_steps(self):
        """The run's length in steps of one process's batch (the schedule's unit)."""
        cfg = self.cfg
        return cfg.epochs * samples_per_epoch(len(self.data.train_set), cfg.batch_size, self.world) \
            / cfg.batch_size

    def learning_rate(self, time_share: float = 0.0):
        cfg = self.cfg
        warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else min(500, int(self._total_steps() // 20))
        return learning_rate_at(self.samples_seen / cfg.batch_size, self._total_steps(), cfg.learning_rate,
                                cfg.schedule, warmup, time_share)

    def save_last(self):
        if not all(torch.isfinite(p).all() for p in self.plain_model.parameters()) or (
                self.ema is not None and not all(torch.isfinite(p).all() for p in self.ema.model.parameters())):
            raise RunStopped("non-finite weights: last checkpoint left as it was; lower --learning-rate")
        if not self.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, {
            "model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {}, "epoch": self.epoch,
            "samples_in_epoch": self.samples_in_epoch, "samples_seen": self.samples_seen, "world": self.world,
            "learning_rate": self.optimizer.param_groups[0]["lr"], "best": self.best, "bicubic": self.bicubic,
            "since_best": self.since_best, "skipped_steps": self.skipped_total, "bicubic_images": self.bicubic_images, "train_config": asdict(self.cfg),
            "ema": self.ema.state_dict() if self.ema is not None else {}, "model_config": self.model_config,
            "split": self.data.split, "rng": rng_state()})

    def _validate(self, model, dataset, indices, desc):
        """Scores the inference form of `model` (BatchNorm folded, channels-last: predict.py's
        outputs, 2x faster on a CPU) on `indices` of `dataset`. Returns (means, details),
        details with the inference model under "model" (see engine.validate for the rest)."""
        fast = prepare_model(model, fold_bn=True, channels_last=self.cfg.channels_last)
        amp = self.cfg.amp and self.device.type == "cuda"     # on a CPU fp32: exact across process counts
        metrics, details = validate(fast, dataset, self.device, self.cfg.scale, self.rank, self.world, indices,
                                    amp, self.cfg.amp_dtype, desc)
        return metrics, {**details, "model": fast}

    def _eval_ready(self):
        """Make the BatchNorm running statistics those of the current weights (see engine)."""
        if self.cfg.bn_refresh > 0:
            refresh_batchnorm(self.eval_model, self._refresh_batches(), self.amp_dtype, self.cfg.channels_last)
        distributed.broadcast_buffers(self.eval_model, self.world)  # every rank validates rank 0's stats

    def _refresh_batches(self):
        """Training batches for the BatchNorm refresh: the same seeded draw every time (an epoch
        key no training epoch uses)."""
        count = self.cfg.bn_refresh
        batches = self.data.epoch_batches(REFRESH_EPOCH, 0)
        for k, (batch, _) in enumerate(batches):
            if k >= count:
                break
            if batch is not None:
                yield to_float(batch[0], self.device)

    def _predict_estimate(self):
        """Before a long run: what predicting a test set of this data's frames will cost."""
        if self.is_main and self.data.frame_size is not None:
            self.log(predict_estimate_line(self.eval_model, *self.data.frame_size, self.device, 500, self.cfg.amp,
                                           self.cfg.amp_dtype))

    # -- the loop ------------------------------------------------------------------------------
    def fit(self):
        try:
            self._fit()
        finally:
            self.data.close()

    def _fit(self):
        cfg, log, data = self.cfg, self.log, self.data
        has_val = len(data.val_set) > 0
        if self.bicubic is None and has_val:
            self.bicubic, details = self._validate(Bicubic(cfg.scale).to(self.device), data.val_set,
                                                   data.val_subset, "bicubic")
            self.bicubic_images = {r["name"]: r for r in details["per_image"]}
            dropped = f" ({self.bicubic['dropped']} undecodable left out)" if self.bicubic["dropped"] else ""
            log(f"bicubic on the {self.bicubic['images']} validation images scored each epoch{dropped}: PSNR "
                f"{self.bicubic['psnr']:.3f} dB, score {self.bicubic['score']:.3f}")
        self._predict_estimate()
        limit_s = cfg.time_limit * 3600
        first_step = self.step + 1
        started, bad_in_row, stopped, last_val_s = time.time(), 0, None, 0.0

        def clock():
            """Rank 0's seconds used against --time-limit (with room for one more validation).
            Only rank 0's reading is ever used: every rank gets it in the step's reduction, so
            the learning rate and the stop are the same on every rank (a rank's own clock
            would give each its own rate, and DDP never re-syncs the weights)."""
            return time.time() - started + last_val_s if self.is_main else 0.0

        while self.epoch < cfg.epochs and stopped is None:
            epoch, epoch_start = self.epoch, time.time()
            losses, dropped, skipped = [], 0, 0
            self.model.train()
            bar = progress(data.epoch_batches(epoch, self.samples_in_epoch), total=len(data.sampler),
                           desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=False,
                           quiet=not self.is_main)
            batches = iter(bar)
            current = next(batches, None)
            # whether some rank lost its whole first batch, and the clock: agreed once an epoch;
            # then each step's reduction carries both for the next step (one host sync a step)
            missing, used_s = self._agree(current, clock())
            while current is not None:
                upcoming = next(batches, None)      # looked at one step ahead, to agree on it in this step
                batch, n_dropped = current
                dropped += n_dropped
                if missing:  # some rank lost its whole batch: every rank skips the step, or DDP's collectives hang
                    dropped += 0 if batch is None else batch[0].shape[0]
                    missing, used_s = self._agree(upcoming, clock())
                else:
                    lr_imgs, hr_imgs = (to_float(t, self.device) for t in batch)   # (N,3,p,p), (N,3,sp,sp)
                    if self.device.type == "cuda" and cfg.channels_last:
                        lr_imgs = lr_imgs.contiguous(memory_format=torch.channels_last)
                    for group in self.optimizer.param_groups:
                        group["lr"] = self.learning_rate(used_s / limit_s if limit_s else 0.0)
                    step = train_step(self.model, self.optimizer, self.scaler, lr_imgs, hr_imgs, self.criterion,
                                      self.amp_dtype, self.world, cfg.grad_accum,
                                      share=(self._lost(upcoming), clock()), guard=self.bn_guard)
                    missing, used_s = step.shared[0] > 0, step.shared[1]
                    if step.loss is None:   # not applied on any rank; the weight average stays still too
                        skipped, bad_in_row = skipped + 1, bad_in_row + 1
                        self.skipped_total += 1
                        if bad_in_row >= cfg.max_bad_steps:
                            raise RunStopped(f"{bad_in_row} steps in a row skipped ({self._skip_reason(step.why)}) "
                                             f"at step {self.step}: stopped; {self.run_dir / CHECKPOINT_NAME} holds "
                                             f"the last good state")
                    else:
                        losses.append(step.loss)
                        bad_in_row = 0
                        if self.ema is not None:
                            self.ema.update(self.plain_model)
                        bar.set_postfix(loss=f"{step.loss:.4f}")
                self.step += 1
                if self.step == first_step:
                    log(f"first training step after {time.time() - self.created:.1f} s (scan, split, cache, "
                        f"model, bicubic baseline)")
                global_batch = cfg.batch_size * self.world
                self.samples_in_epoch += global_batch
                self.samples_seen += global_batch
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_last()
                if limit_s and used_s > limit_s:     # rank 0's clock, so every rank stops at this step
                    stopped = f"--time-limit of {cfg.time_limit} h reached"
                    break
                current = upcoming
            train_s = time.time() - epoch_start
            last_val_s = self._end_epoch(epoch, losses, dropped, skipped, has_val, train_s, finished=not stopped)
            if not stopped and cfg.patience and self.since_best >= cfg.patience:
                stopped = f"no better validation {SELECT_LABELS[self.select]} for {cfg.patience} epochs (--patience)"
        distributed.barrier(self.world)
        self._summary(stopped)

    @staticmethod
    def _lost(item) -> float:
        """1 when this rank's next step has no batch (every sample failed to load)."""
        return 1.0 if item is not None and item[0] is None else 0.0

    def _agree(self, item, clock_s):
        """(some rank lacks `item`'s batch, rank 0's clock) agreed by all ranks: one sync."""
        lost, used_s = distributed.agree_values((self._lost(item), clock_s), self.world, self.device)
        return lost > 0, used_s

    def _skip_reason(self, why: str) -> str:
        if self.scaler is not None:
            return (f"non-finite {why} in fp16, the GradScaler's scale down to {self.scaler.get_scale():.3g}: the model "
                    f"overflows fp16; train with --amp-dtype bf16 or --no-amp, or lower --learning-rate")
        return f"non-finite {why}; lower --learning-rate"

    def _end_epoch(self, epoch, losses, dropped, skipped, has_val, train_s, finished=True):
        """Validate the subset, keep the best weights, save last.ckpt, log the row.
        An epoch cut by --time-limit is validated too (its weights are the coldest).
        Returns the seconds spent validating."""
        cfg, data = self.cfg, self.data
        val_start = time.time()
        self._eval_ready()
        metrics, details = (self._validate(self.eval_model, data.val_set, data.val_subset, "validate")
                            if has_val else ({}, None))
        improved = (not has_val) or metrics[self.select] > self.best.get(self.select, float("-inf"))
        if improved:
            self.best = {self.select: metrics.get(self.select, float("nan")), "epoch": epoch + 1, **metrics}
            self.since_best = 0
            if self.is_main:
                save_weights(self.run_dir / WEIGHTS_NAME, self.eval_model, self.model_config)
        elif finished:
            self.since_best += 1
        if finished:
            self.epoch, self.samples_in_epoch = epoch + 1, 0
        self.save_last()
        val_s = time.time() - val_start
        mean_loss = sum(losses) / max(len(losses), 1)
        row = {"epoch": epoch + 1, "step": self.step, "samples": self.samples_seen, "train_loss": f"{mean_loss:.6f}",
               "learning_rate": f"{self.optimizer.param_groups[0]['lr']:.3g}", "dropped_samples": dropped,
               "skipped_steps": skipped, "train_seconds": f"{train_s:.3f}", "val_seconds": f"{val_s:.3f}",
               "seconds": f"{train_s + val_s:.1f}", "bicubic_psnr": f"{self.bicubic['psnr']:.4f}" if self.bicubic else ""}
        row.update({f"val_{k}": f"{metrics[k]:.4f}" for k in ("psnr", "psnr_y", "ssim", "score") if k in metrics})
        if self.bicubic:
            row["bicubic_score"] = f"{self.bicubic['score']:.4f}"
        self.log.add_row(row)
        text = (f"epoch {epoch + 1}/{cfg.epochs}{'' if finished else ' (cut by --time-limit)'} "
                f"loss {mean_loss:.4f}"
                + (f" | val PSNR {metrics['psnr']:.3f} dB (Y {metrics['psnr_y']:.3f}) SSIM {metrics['ssim']:.4f} "
                   f"score {metrics['score']:.3f}" if has_val else "")
                + (" *best*" if improved and has_val else "")
                + (f" | dropped {dropped} samples" if dropped else "")
                + (f" | fp16 GradScaler: {skipped} steps skipped, scale {self.scaler.get_scale():g}" if self.scaler
                   else f" | skipped {skipped} steps" if skipped else "")
                + f" | train {train_s:.0f}s, validate {val_s:.0f}s")
        self.log(text)
        self.views.epoch(epoch + 1, row, details, data.val_set, self.bicubic, self.bicubic_images, self.device)
        return val_s

    def _final_check(self):
        """The best weights and bicubic on the guard set (all validation images, or some training
        images without validation). Returns (model metrics, bicubic metrics)."""
        data = self.data
        best, self.scored = self.eval_model, "the current weights"
        if (self.run_dir / WEIGHTS_NAME).is_file():        # rank 0 wrote them; every rank reads them
            best, _ = load_model(self.run_dir / WEIGHTS_NAME, device=self.device)
            self.scored = file_sha256(self.run_dir / WEIGHTS_NAME)
        model_metrics, details = self._validate(best, data.guard_set, data.guard_indices, "final check")
        bicubic, bicubic_details = self._validate(Bicubic(self.cfg.scale).to(self.device), data.guard_set,
                                                  data.guard_indices, "final check (bicubic)")
        return model_metrics, bicubic, details, {r["name"]: r for r in bicubic_details["per_image"]}

    def _ranks_agree(self) -> list:
        """What each rank ended with: its run folder, the weights its share of the final check
        scored and a fingerprint of its weights (DDP ranks must end bit-identical); a loud line
        when they differ."""
        digest = hashlib.sha256()
        for model in (self.plain_model, self.eval_model):
            for p in model.parameters():
                digest.update(p.detach().float().cpu().numpy().tobytes())
        mine = {"rank": self.rank, "run_dir": str(self.run_dir), "scored": self.scored,
                "weights_fingerprint": digest.hexdigest()[:16]}
        ranks = distributed.gather(mine, self.world)
        for key in ("run_dir", "scored", "weights_fingerprint"):
            if len({r[key] for r in ranks}) > 1:
                self.log(f"WARNING: the {self.world} processes disagree on {key}: "
                         + ", ".join(f"rank {r['rank']} {r[key]}" for r in ranks))
        return ranks

    def _summary(self, stopped):
        log = self.log
        if stopped:
            log(f"stopped early: {stopped}; resume with --resume {self.run_dir / CHECKPOINT_NAME}")
        final, bicubic, final_details, bicubic_images = self._final_check()
        gain = final["psnr"] - bicubic["psnr"]
        data = self.data
        subset = len(data.val_subset) < len(data.val_set)
        if self.bicubic and self.best.get("epoch"):
            key = self.select
            log(f"best validation {SELECT_LABELS[key]} {self.best[key]:.3f} at epoch {self.best['epoch']}"
                + (f" on the {len(data.val_subset)}-image subset scored each epoch" if subset else "")
                + f" vs bicubic {self.bicubic[key]:.3f} ({self.best[key] - self.bicubic[key]:+.3f})")
        log(f"best weights on {data.guard_on} ({final['images']} images): PSNR {final['psnr']:.3f} dB vs bicubic "
            f"{bicubic['psnr']:.3f} dB ({gain:+.3f} dB); score {final['score']:.3f} vs {bicubic['score']:.3f}")
        worse = gain < 0
        if worse:
            log(bicubic_warning(final["psnr"], bicubic["psnr"], data.guard_on))
        ranks = self._ranks_agree()
        summary = {"run": self.run_dir.name, "best_epoch": self.best.get("epoch", 0), "best_subset": self.best,
                   "checked_on": data.guard_on, "model": final, "bicubic": bicubic, "gain_db": gain,
                   "worse_than_bicubic": worse, "stopped": stopped or "", "epochs_done": self.epoch,
                   "epoch_seconds": round(sum(float(r["seconds"]) for r in self.log.rows), 1),
                   "skipped_steps": self.skipped_total, "ranks": ranks}
        if self.is_main:
            write_json(self.run_dir / SUMMARY_NAME, summary)
        self.views.finish(final_details, data.guard_set, self.bicubic, bicubic_images, self.device, summary)
        if self.is_main:
            paths.record_last_run(self.run_dir)
        log(f"weights: {self.run_dir / WEIGHTS_NAME}  checkpoint: {self.run_dir / CHECKPOINT_NAME}")
