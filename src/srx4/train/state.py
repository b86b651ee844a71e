"""TrainState: where a run is and what it has seen, the part of last.ckpt that is not
weights or optimizer state. `checkpoint_dict` writes the whole last.ckpt in one place;
`TrainState.from_checkpoint` reads one of any version (keys an older run lacks take
their defaults).

Positions are in samples, all ranks together, so a run saved by two processes resumes
in one at the same point of the schedule and of the epoch's order.
"""
from dataclasses import asdict, dataclass, field, fields
from typing import Optional

from srx4.models.weights import unwrap
from srx4.runs.checkpoint import rng_state


@dataclass
class TrainState:
    epoch: int = 0                      # epochs finished
    samples_in_epoch: int = 0           # samples of the current epoch already trained on
    samples_seen: int = 0               # samples trained on in all
    best: dict = field(default_factory=dict)          # the best validation figures and their epoch
    bicubic: Optional[dict] = None      # bicubic on the validation subset (scored once)
    bicubic_images: dict = field(default_factory=dict)  # image name -> bicubic figures, for the report
    since_best: int = 0                 # epochs without a better figure (--patience)
    skipped_steps: int = 0              # steps not applied: non-finite loss or gradients

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "TrainState":
        return cls(**{f.name: checkpoint[f.name] for f in fields(cls) if f.name in checkpoint})


def checkpoint_dict(state: TrainState, parts, cfg, world: int, split: dict) -> dict:
    """Everything last.ckpt holds (read back by Trainer, inspect_run and the tests)."""
    return {
        **asdict(state),
        "model": unwrap(parts.model).state_dict(), "optimizer": parts.optimizer.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler else {},
        "ema": parts.ema.state_dict() if parts.ema is not None else {},
        "model_config": parts.model_config, "train_config": asdict(cfg), "split": split, "world": world,
        "learning_rate": parts.optimizer.param_groups[0]["lr"], "rng": rng_state(),
        "precision": parts.precision.as_dict(),
    }
