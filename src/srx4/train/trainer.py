"""The training run behind src/train.py: data -> model -> loop -> logs/<run>/.

`Trainer(config, device, rank, world, checkpoint).fit()`; config is a TrainConfig
(srx4.train.config), checkpoint the loaded last.ckpt when resuming. The run reads in
the order it happens: the data (srx4.data.train_data), the parts it steps with
(setup.build_parts: model, optimizer, AMP, EMA), the position (state.TrainState),
then `fit`: bicubic once, the epochs (one step at a time, train/step.py), after each a
validation that picks the best weights and saves last.ckpt, and the end of the run
(final_check.py `finish`: the check against bicubic, summary.json, the report): a model worse
than bicubic is reported loudly.
Rank 0 alone writes files; every crop is keyed by (seed, epoch, index) and positions
are in samples, so a killed and resumed run ends with the same weights.
"""
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from srx4.core import layout
from srx4.core import distributed, paths
from srx4.core.errors import FlagError, RunStopped
from srx4.core.io import write_json
from srx4.core.progress import progress
from srx4.data.patches import samples_per_epoch
from srx4.data.train_data import TrainData
from srx4.image.codec import to_float
from srx4.image.scoring import VALIDATION_COLUMNS, Validation
from srx4.models import Bicubic
from srx4.models.weights import save_weights
from srx4.predict.inference import estimate_predict_seconds, predict_estimate_line, prepare_model
from srx4.runs.checkpoint import save_checkpoint, set_rng_state
from srx4.runs.run_report import RunViews
from srx4.runs.runlog import RunLog
from srx4.train.config import TrainConfig
from srx4.train.final_check import SELECT_LABELS, finish
from srx4.train.loop_rules import BadSteps, EpochTally, Patience, RunClock, StepAgreement, TimeLimit
from srx4.train.setup import build_parts
from srx4.train.state import TrainState, checkpoint_dict
from srx4.train.plan import SessionPlan, minutes, test_set_shape
from srx4.train.step import (learning_rate_at, out_of_memory_line, refresh_batchnorm, schedule_position,
                             train_step)
from srx4.train.validate import validate

REFRESH_EPOCH = 2**31 - 1
PLAN_AFTER_STEPS = 20      # the session plan is logged again with the step time measured over these steps


def run_dir_for(cfg: TrainConfig) -> Path:
    """Where a run writes: its own folder, or `<run>_resumed` when resuming from a
    read-only one (an attached Kaggle output)."""
    if cfg.resume:
        source = Path(cfg.resume).resolve().parent
        return paths.logs_dir() / f"{source.name}_resumed" if paths.read_only(source) else source
    return paths.logs_dir() / cfg.run


class Trainer:
    def __init__(self, cfg: TrainConfig, device, rank: int = 0, world: int = 1, checkpoint: dict = None,
                 notes=(), printed=()):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.created = time.time()
        self.is_main = rank == 0
        self.run_dir = run_dir_for(cfg)
        self.log = RunLog(self.run_dir, enabled=self.is_main)
        for line in printed:                # what train.py printed before this log existed (the demo, its preset)
            self.log(line, echo=False)
        for line in notes:                  # what train.py decided for this machine: the GPU's cap, the step's size
            self.log(line)
        self.log("settings: " + " ".join(f"{k}={v}" for k, v in asdict(cfg).items() if v not in ("", None)))
        if checkpoint:
            self._carry_over(Path(cfg.resume).resolve().parent)
        self.data = TrainData(cfg, self.run_dir, self.log, rank, world, device,
                              checkpoint["split"] if checkpoint else None)
        if cfg.cuda_graphs and device.type == "cuda" and self.data.loading == "stream":
            raise FlagError("--cuda-graphs: the data is streamed here (bigger than the RAM and disk budgets), and a "
                            "window may drop samples: the shapes are not static; train without --cuda-graphs")
        self.parts = build_parts(cfg, device, world, checkpoint, self.log)
        self.state = TrainState.from_checkpoint(checkpoint) if checkpoint else TrainState()
        self.select = cfg.select     # the validation figure that picks the best weights
        if not checkpoint:
            self.state.best = {self.select: float("-inf"), "epoch": 0}
        self.step = self.state.samples_seen // (cfg.batch_size * world)     # this process's steps
        if checkpoint:
            set_rng_state(checkpoint.get("rng", {}))
            self.log(f"resuming {cfg.resume} at epoch {self.state.epoch + 1}, sample {self.state.samples_in_epoch} "
                     f"of the "
                     f"epoch ({self.state.samples_seen} seen, {world} process(es) now); learning rate "
                     f"{self.learning_rate():.6g}")
        if self.is_main:
            write_json(self.run_dir / layout.CONFIG, {**asdict(cfg), "precision": self.parts.precision.as_dict()})
        self.views = RunViews(self.run_dir, cfg, self.log, enabled=self.is_main)

    def _carry_over(self, source: Path):
        """Resuming into a new folder: bring the best weights and the rows so far along,
        so the new folder has weights even if no later epoch beats them."""
        self.log.load_rows(source)
        if source != self.run_dir and self.is_main:
            for name in (layout.WEIGHTS, layout.MODEL_CONFIG, layout.SUMMARY):
                if (source / name).is_file() and not (self.run_dir / name).exists():
                    shutil.copyfile(source / name, self.run_dir / name)
            self.log(f"resuming from read-only {source}: writing to {self.run_dir} (its best weights copied)")

    # -- positions ---------------------------------------------------------------------------
    def _total_steps(self):
        """The run's length in steps of one process's batch (the schedule's unit)."""
        cfg = self.cfg
        return cfg.epochs * samples_per_epoch(len(self.data.train_set), cfg.batch_size, self.world) \
            / cfg.batch_size

    def learning_rate(self, time_share: float = 0.0):
        cfg = self.cfg
        warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else min(500, int(self._total_steps() // 20))
        return learning_rate_at(schedule_position(self.state.samples_seen, cfg.batch_size), self._total_steps(),
                                cfg.learning_rate, cfg.schedule, warmup, time_share)

    def _check_finite(self):
        """Stop before writing anything when the weights (or their average) are not finite."""
        models = [self.parts.plain_model] + ([self.parts.ema.model] if self.parts.ema is not None else [])
        if not all(torch.isfinite(p).all() for m in models for p in m.parameters()):
            raise RunStopped("non-finite weights: last checkpoint and best weights left as they were; lower "
                             "--learning-rate")

    def save_last(self):
        self._check_finite()
        if not self.is_main:
            return
        save_checkpoint(self.run_dir / layout.CHECKPOINT,
                        checkpoint_dict(self.state, self.parts, self.cfg, self.world, self.data.split))

    def _validate(self, model, dataset, indices, desc) -> Validation:
        """Scores the inference form of `model` (BatchNorm folded, channels-last: predict.py's
        outputs, 2x faster on a CPU) on `indices` of `dataset`."""
        fast = prepare_model(model, fold_bn=True, channels_last=self.cfg.channels_last)
        dtype = self.parts.precision.validate_dtype    # core/precision.py: fp32 on a CPU (exact across ranks)
        return validate(fast, dataset, self.device, self.cfg.scale, self.rank, self.world, indices,
                        dtype is not None, dtype, desc, quiet=self.cfg.quiet)

    def _eval_ready(self):
        """Make the BatchNorm running statistics those of the current weights (see train/step.py)."""
        if self.cfg.bn_refresh > 0:
            refresh_batchnorm(self.parts.eval_model, self._refresh_batches(), self.parts.amp_dtype,
                              self.cfg.channels_last)
        distributed.broadcast_buffers(self.parts.eval_model, self.world)  # every rank validates rank 0's stats

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

    def _validate_start(self):
        """Fine-tuning: the start weights, as they are, are the first candidate for the best (epoch
        0), so a run whose epochs only do worse on validation keeps them instead of its least bad
        epoch (a few crops of one dark frame can pull a good start below bicubic on others)."""
        data = self.data
        val = self._validate(self.parts.eval_model, data.val_set, data.val_subset, "start weights")
        self.state.best = {"epoch": 0, **val.figures()}
        if self.is_main:
            save_weights(self.run_dir / layout.WEIGHTS, self.parts.eval_model, self.parts.model_config)
        bicubic = self.state.bicubic
        self.log(f"start weights (--init-weights) on the validation images: PSNR {val.psnr:.3f} dB, score "
                 f"{val.score:.3f} (bicubic {bicubic['psnr']:.3f}, {bicubic['score']:.3f}); kept as the best "
                 f"until an epoch beats them on {SELECT_LABELS[self.select]}")

    def _predict_estimate(self):
        """Before training (rank 0): what predicting the test set will cost with this model on
        this device, logged; with --session-hours or --time-limit, the session plan made from it
        (train/plan.py). Every rank gets the plan (None without a limit)."""
        cfg, plan = self.cfg, None
        if self.is_main and self.data.frame_size is not None:
            frames, size, label = test_set_shape(self.data.frame_size)
            forward_s = estimate_predict_seconds(self.parts.eval_model, *size, self.device, frames, cfg.amp,
                                                 cfg.amp_dtype)
            self.log(predict_estimate_line(forward_s, *size, self.device, frames) + f" ({label})")
            if cfg.session_hours or cfg.time_limit:
                plan = SessionPlan.make(cfg, forward_s, frames, size, self.created)
                now = time.time()
                for line in plan.lines(now):
                    self.log(line)
                write_json(self.run_dir / layout.PLAN, plan.record(now))
        return distributed.from_rank0(plan, self.world)

    def _log_plan(self, plan, step_s: float):
        """The plan again with the measured step time; plan.json for the kernel."""
        if not self.is_main or plan is None:
            return
        steps_per_epoch = len(self.data.sampler)
        for line in plan.lines(self.plan_made, step_s, steps_per_epoch):
            self.log(line)
        write_json(self.run_dir / layout.PLAN, {**plan.record(self.plan_made), "step_s": step_s})

    # -- the loop ------------------------------------------------------------------------------
    def fit(self):
        try:
            self._fit()
        finally:
            self.data.close()

    def _fit(self):
        """The loop: for each epoch, for each step: agree, set the rate, step, count, stop?;
        then validate, keep the best, save. The rules it steps by are train/loop_rules.py."""
        cfg, has_val = self.cfg, len(self.data.val_set) > 0
        plan, time_limit = self._before_loop(has_val)
        patience, bad_steps = Patience(cfg.patience, SELECT_LABELS[self.select]), BadSteps(cfg.max_bad_steps)
        clock = RunClock(self.is_main)
        agreement = StepAgreement(self.world, self.device, clock)
        self.limit_s, self.loop_started, stopped = time_limit.seconds, clock.started, None
        self.first_step, self.plan_step = self.step + 1, self.step + PLAN_AFTER_STEPS

        while self.state.epoch < cfg.epochs and stopped is None:
            epoch, epoch_start, tally = self.state.epoch, time.time(), EpochTally()
            self.parts.model.train()
            batches = self._epoch_batches(epoch)
            current = next(batches, None)
            agreement.agree(current)            # then each step's own reduction carries the agreement
            while current is not None:
                upcoming = next(batches, None)  # looked at one step ahead, to agree on it in this step
                batch, dropped = current
                tally.dropped += dropped
                if agreement.missing:           # some rank lost its whole batch: every rank skips the step
                    tally.dropped += 0 if batch is None else batch[0].shape[0]
                    agreement.agree(upcoming)
                else:
                    self.set_learning_rate(time_limit.share(agreement.used_s))
                    step = self._train_step(batch, agreement.share(upcoming))
                    agreement.after_step(step.shared)
                    tally.add(step)
                    self.state.skipped_steps += step.loss is None
                    if step.loss is not None and self.parts.ema is not None:
                        self.parts.ema.update(self.parts.plain_model)
                    too_many = bad_steps.after(step.loss is not None)
                    if too_many:
                        raise RunStopped(f"{too_many} ({self._skip_reason(step.why)}) at step {self.step}: stopped; "
                                         f"{self.run_dir / layout.CHECKPOINT} holds the last good state")
                self._after_step(plan, upcoming is None)
                stopped = time_limit.reached(agreement.used_s)     # rank 0's clock: every rank stops here
                if stopped:
                    break
                current = upcoming
            clock.last_val_s = self._end_epoch(epoch, tally, has_val, time.time() - epoch_start,
                                               finished=not stopped)
            stopped = stopped or patience.reached(self.state.since_best)
        distributed.barrier(self.world)
        finish(self, stopped)

    def _before_loop(self, has_val: bool):
        """Bicubic's validation figures, the start weights' (--init-weights), the prediction
        estimate and session plan: (plan or None, the TimeLimit)."""
        cfg, log, data = self.cfg, self.log, self.data
        if self.state.bicubic is None and has_val:
            bicubic = self._validate(Bicubic(cfg.scale).to(self.device), data.val_set, data.val_subset, "bicubic")
            self.state.bicubic, self.state.bicubic_images = bicubic.figures(), bicubic.by_name()
            dropped = f" ({bicubic.dropped} undecodable or dirty pairs left out)" if bicubic.dropped else ""
            log(f"bicubic on the {bicubic.images} validation images scored each epoch{dropped}: PSNR "
                f"{bicubic.psnr:.3f} dB, score {bicubic.score:.3f}")
        if self.state.samples_seen == 0 and cfg.init_weights and has_val:
            self._validate_start()
        plan = self._predict_estimate()
        self.plan_made = time.time()
        limit_s = plan.training_s(self.plan_made) if plan else cfg.time_limit * 3600
        limit_s = distributed.from_rank0(limit_s, self.world)     # rank 0's clock and plan decide for all
        limit_why = (f"the session plan's {minutes(limit_s)} of training" if plan and plan.session_s
                     else f"--time-limit of {cfg.time_limit} h")
        if plan is not None and plan.session_s and limit_s <= 0:
            raise RunStopped(f"--session-hours {cfg.session_hours}: no time left to train after predicting, the "
                             f"CSV and --margin-minutes {cfg.margin_minutes}: predict with the weights you have")
        return plan, TimeLimit(limit_s, limit_why)

    def _epoch_batches(self, epoch: int):
        """This rank's (batch or None, dropped) items of `epoch` from where it stands, behind a
        progress bar (rank 0)."""
        self.bar = progress(self.data.epoch_batches(epoch, self.state.samples_in_epoch),
                            total=len(self.data.sampler), desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="step",
                            leave=False, quiet=self.cfg.quiet or not self.is_main)
        return iter(self.bar)

    def set_learning_rate(self, time_share: float):
        for group in self.parts.optimizer.param_groups:
            group["lr"] = self.learning_rate(time_share)

    def _train_step(self, batch, share):
        """One optimiser step on a (uint8 LR, uint8 HR) batch; `share` rides its reduction."""
        parts = self.parts
        lr_imgs, hr_imgs = (to_float(t, self.device) for t in batch)       # (N, 3, p, p), (N, 3, sp, sp)
        if parts.channels_last:
            lr_imgs = lr_imgs.contiguous(memory_format=torch.channels_last)
        try:
            step = train_step(parts.model, parts.optimizer, parts.scaler, lr_imgs, hr_imgs, parts.criterion,
                              parts.amp_dtype, self.world, self.cfg.grad_accum, share=share, guard=parts.bn_guard)
        except torch.cuda.OutOfMemoryError:      # torch.OutOfMemoryError needs torch 2.5
            cfg = self.cfg
            raise RunStopped(out_of_memory_line(self.rank, self.world, self.device, lr_imgs.shape[0],
                                                lr_imgs.shape[-1], cfg.scale, parts.precision.train,
                                                cfg.grad_accum)) from None
        if step.loss is not None:
            self.bar.set_postfix(loss=f"{step.loss:.4f}")
        return step

    def _after_step(self, plan, last_of_epoch: bool):
        """Count the step's samples; the first step's and the plan's lines; --checkpoint-every."""
        cfg = self.cfg
        self.step += 1
        if self.step == self.first_step:
            self.log(f"first training step after {time.time() - self.created:.1f} s (scan, split, cache, "
                     f"model, bicubic baseline)")
            self.first_done = time.time()
        if self.step == self.plan_step or (last_of_epoch and self.first_step < self.step < self.plan_step):
            self._log_plan(plan, (time.time() - self.first_done) / (self.step - self.first_step))
            self.plan_step = -1
        global_batch = cfg.batch_size * self.world
        self.state.samples_in_epoch += global_batch
        self.state.samples_seen += global_batch
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save_last()

    def _skip_reason(self, why: str) -> str:
        if self.parts.scaler is not None:
            scale = self.parts.scaler.get_scale()
            return (f"non-finite {why} in fp16, the GradScaler's scale down to {scale:.3g}: the model "
                    f"overflows fp16; train with --amp-dtype bf16 or --no-amp, or lower --learning-rate")
        return f"non-finite {why}; lower --learning-rate"

    def _run_left_s(self) -> float:
        """The whole run's time left: the epochs to go at the mean epoch so far (training and
        validation), or what --time-limit / the session plan leaves, whichever is less."""
        seconds = [float(r["seconds"]) for r in self.log.rows]
        left = (self.cfg.epochs - self.state.epoch) * sum(seconds) / max(len(seconds), 1)
        if self.limit_s:
            left = min(left, max(0.0, self.limit_s - (time.time() - self.loop_started)))
        return left

    def _end_epoch(self, epoch, tally, has_val, train_s, finished=True):
        """Validate the subset, keep the best weights, save last.ckpt, log the row.
        An epoch cut by --time-limit is validated too (its weights are the coldest).
        Returns the seconds spent validating."""
        cfg, data = self.cfg, self.data
        val_start = time.time()
        self._eval_ready()
        val = self._validate(self.parts.eval_model, data.val_set, data.val_subset, "validate") if has_val else None
        improved = val is None or val.figure(self.select) > self.state.best.get(self.select, float("-inf"))
        if improved:
            self._check_finite()        # without validation (--val-fraction 0) every epoch is "best"
            self.state.best = {"epoch": epoch + 1, **(val.figures() if val else {self.select: float("nan")})}
            self.state.since_best = 0
            if self.is_main:
                save_weights(self.run_dir / layout.WEIGHTS, self.parts.eval_model, self.parts.model_config)
        elif finished:
            self.state.since_best += 1
        if finished:
            self.state.epoch, self.state.samples_in_epoch = epoch + 1, 0
        self.save_last()
        val_s = time.time() - val_start
        mean_loss, dropped, skipped = tally.mean_loss, tally.dropped, tally.skipped
        state, scaler = self.state, self.parts.scaler
        row = {"epoch": epoch + 1, "step": self.step, "samples": state.samples_seen, "train_loss": f"{mean_loss:.6f}",
               "learning_rate": f"{self.parts.optimizer.param_groups[0]['lr']:.3g}", "dropped_samples": dropped,
               "skipped_steps": skipped, "train_seconds": f"{train_s:.3f}", "val_seconds": f"{val_s:.3f}",
               "seconds": f"{train_s + val_s:.1f}",
               "bicubic_psnr": f"{state.bicubic['psnr']:.4f}" if state.bicubic else ""}
        if val:
            row.update({f"val_{k}": f"{val.figure(k):.4f}" for k in VALIDATION_COLUMNS})
        if self.state.bicubic:
            row["bicubic_score"] = f"{self.state.bicubic['score']:.4f}"
        self.log.add_row(row)
        text = (f"epoch {epoch + 1}/{cfg.epochs}{'' if finished else ' (cut by --time-limit)'} "
                f"loss {mean_loss:.4f}"
                + (f" | val PSNR {val.psnr:.3f} dB (Y {val.psnr_y:.3f}) SSIM {val.ssim:.4f} "
                   f"score {val.score:.3f}" if val else "")
                + (" *best*" if improved and val else "")
                + (f" | dropped {dropped} samples" if dropped else "")
                + (f" | fp16 GradScaler: {skipped} steps skipped, scale {scaler.get_scale():g}" if scaler
                   else f" | skipped {skipped} steps" if skipped else "")
                + f" | train {train_s:.0f}s, validate {val_s:.0f}s"
                + (f" | the run: about {minutes(self._run_left_s())} left, then the final check"
                   if self.state.epoch < cfg.epochs else ""))
        self.log(text)
        self.views.epoch(epoch + 1, row, val, data.val_set, state.bicubic, state.bicubic_images, self.device)
        return val_s
