"""Everything a training run steps with, built once: the model (from flags, from a
checkpoint, or from given weights), its device, layout, DDP wrapper and compile, Adam,
the mixed-precision dtype and GradScaler, the loss, the weight average.

    parts = build_parts(cfg, device, world, checkpoint, log)
    train_step(parts.model, parts.optimizer, parts.scaler, ..., parts.criterion, parts.amp_dtype, ...)
"""
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

from srx4.core.errors import FlagError
from srx4.core.precision import Precision, for_training
from srx4.models import build_model, count_parameters, model_config_from_flags
from srx4.models.base import checkpoint_activations
from srx4.models.weights import load_model, load_state
from srx4.train.config import TrainConfig
from srx4.train.ema import WeightAverage
from srx4.train.losses import loss_fn
from srx4.train.step import BatchNormGuard


@dataclass
class TrainingParts:
    model_config: dict                   # model.json of what is trained
    plain_model: torch.nn.Module         # the module itself (weights, BatchNorm statistics, capabilities)
    model: torch.nn.Module               # what the step calls: DDP and/or torch.compile around plain_model
    optimizer: torch.optim.Optimizer
    precision: Precision                 # core/precision.py: the step's and validation's dtypes, layout, scaler
    scaler: Optional[torch.amp.GradScaler]   # fp16 only
    bn_guard: BatchNormGuard             # puts back the statistics of a skipped step's forward
    criterion: Callable
    ema: Optional[WeightAverage]

    @property
    def amp_dtype(self) -> Optional[torch.dtype]:
        """The training step's autocast dtype (None = fp32)."""
        return self.precision.train_dtype

    @property
    def channels_last(self) -> bool:
        """The model and its inputs in channels-last memory layout."""
        return self.precision.channels_last

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated, selected and saved: the weight average when --ema is on."""
        return self.ema.model if self.ema is not None else self.plain_model


def initial_model(cfg: TrainConfig, checkpoint, log):
    """(module, model config): the checkpoint's model when resuming, the given weights' with
    --init-weights (train.py checked the flags), else the one the flags describe."""
    if checkpoint:
        model_config = checkpoint.get("model_config") or model_config_from_flags(asdict(cfg))
        model = build_model(model_config, checkpoint["model"])
        load_state(model, checkpoint["model"], cfg.resume)
        return model, model_config
    if cfg.init_weights:
        model, model_config = load_model(cfg.init_weights, expect={"scale": cfg.scale})
        log(f"initialised from {cfg.init_weights}: its model {model_config}")
        return model.train(), model_config
    model_config = model_config_from_flags(asdict(cfg))
    return build_model(model_config), model_config


def build_parts(cfg: TrainConfig, device: torch.device, world: int, checkpoint, log) -> TrainingParts:
    torch.manual_seed(cfg.seed)
    model, model_config = initial_model(cfg, checkpoint, log)
    cuda = device.type == "cuda"
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = cuda and not cfg.deterministic
    if cfg.activation_checkpointing:
        blocks = checkpoint_activations(model)
        log(f"activation checkpointing: {blocks} blocks recompute their activations in the backward pass"
            if blocks else "activation checkpointing: this model names no blocks to checkpoint; off")
    plain = model.to(device)
    precision = for_training(device, cfg.amp, cfg.amp_dtype, cfg.channels_last, plain.spec,
                             model_config.get("name", cfg.model))
    log(precision.line())
    changed = precision.changed_from((checkpoint or {}).get("precision"))
    if changed:
        log(f"warning: {changed}")
    if precision.channels_last:
        plain = plain.to(memory_format=torch.channels_last)
    log(f"model {model_config} ({count_parameters(plain) / 1e6:.3f} M parameters) on {device}"
        + (f" x {world} processes" if world > 1 else ""))
    wrapped = torch.nn.parallel.DistributedDataParallel(plain, device_ids=[device.index] if cuda else None) \
        if world > 1 else plain
    if cuda and cfg.cuda_graphs:        # the step's shapes are static (config checks): one graph replay a step
        if world > 1:
            raise FlagError("--cuda-graphs: one process only (DDP's gradient hooks are not captured); train "
                            "without it under torchrun")
        wrapped = torch.compile(wrapped, mode="reduce-overhead", dynamic=False)
        log("CUDA graphs: the model's forward and backward captured (torch.compile, mode reduce-overhead"
            + ("; --compile-mode is not used" if cfg.compile else "") + ")")
    elif cuda and cfg.compile:
        wrapped = torch.compile(wrapped, mode=cfg.compile_mode)
    # fused: one kernel for the whole update on CUDA, and no host sync under the fp16 GradScaler
    optimizer = torch.optim.Adam(plain.parameters(), lr=cfg.learning_rate, fused=cuda or None)
    scaler = torch.amp.GradScaler(device.type, init_scale=cfg.grad_scale_init) if precision.grad_scaler else None
    if checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
    ema = WeightAverage(plain, cfg.ema) if cfg.ema > 0 else None
    if ema is not None:
        if checkpoint and checkpoint.get("ema"):
            ema.load_state_dict(checkpoint["ema"])
        elif checkpoint:
            log("the checkpoint has no weight average (--ema): one starts from its weights now")
        log(f"validating and keeping an average of the weights (--ema {cfg.ema}; the decay warms up, "
            f"{ema.decay_now():.3f} now)")
    criterion = loss_fn(cfg.loss, cfg.ssim_weight, cfg.vgg_weight, cfg.vgg_weights)
    if isinstance(criterion, torch.nn.Module):             # l1+vgg: a frozen VGG19, on the model's device
        criterion = criterion.to(device)
        log(f"loss: L1 + {cfg.vgg_weight:g} x L1 of VGG19 conv5_4 features (fp32; sharper textures, lower PSNR)")
    return TrainingParts(model_config, plain, wrapped, optimizer, precision, scaler, BatchNormGuard(plain),
                         criterion, ema)
