"""Train SRResNet (default), EDSR-baseline, a SPAN-style model or SRCNN on paired LR/HR
folders, from scratch or fine-tuning given weights (ours, shipped, or a foreign .pth).

In:  --data DIR holding lr/NAME and hr/NAME (default: data/train, the competition
     folders under /kaggle/input on Kaggle, else the bundled demo built from
     scikit-image's photos); --config FILE, a recipe of these settings (configs/).
Out: logs/<run>/ best.safetensors + model.json (best validation RGB PSNR, or score with --select),
     last.ckpt (resumable), config.json, split.json, hygiene.json, train.log,
     metrics.csv, curves.png, samples/epoch_NNN.png.

    python src/train.py                                   # the demo, on CPU, a few minutes
    python src/train.py --config configs/cpu-finetune.toml --data data/train   # a recipe, flags override it
    python src/train.py --data data/train --epochs 100 --run srresnet_a
    python src/train.py --resume logs/srresnet_a/last.ckpt
    python src/train.py --init-weights srresnet-x4 --epochs 20        # fine-tune shipped weights
    python src/train.py --init-weights 4x_SwinIR_light.pth --grad-accum 4 --activation-checkpointing
    torchrun --nproc_per_node=2 src/train.py --data ... --run-name a   # two GPUs (DDP)
"""
import os
import shutil
import signal
import sys
import time

import torch

from srx4.core import distributed, gpu_memory, layout
from srx4.core.cli import parse_with_file, run_main
from srx4.core.errors import FlagError, UserError
from srx4.core.system import resolve_device
from srx4.runs.tracking import check_tracker
from srx4.train.config import TrainConfig
from srx4.train.start import free_run_name, model_spec, settle, size_for_the_card, warn_idle
from srx4.train.trainer import Trainer, run_dir_for


def main(argv=None):
    """Train; errors a user can act on are raised as UserError (one line from run_main)."""
    argv = sys.argv[1:] if argv is None else argv
    config, given = parse_with_file(TrainConfig, __doc__.split("\n")[0], argv)  # given: flag -> where it was set
    config.check(given)
    printed = []                                    # lines printed before the run's log exists
    config, checkpoint = settle(config, given, printed)     # the resumed run's settings, the data, --init-weights
    config.check(given)
    warn_idle(config, given, printed)
    check_tracker(config.tracker)
    if config.threads:
        torch.set_num_threads(config.threads)
    device_type = "cuda" if (config.device.startswith("cuda") or
                             (config.device == "auto" and torch.cuda.is_available())) else "cpu"
    rank, world, local_rank = distributed.setup(device_type)
    device = resolve_device(config.device, local_rank)
    notes = []
    if config.gpu_memory_gb and device.type == "cuda":        # the GPU this rank trains on, --device cuda:N too
        notes.append(gpu_memory.limit(config.gpu_memory_gb, device))
    if device.type == "cuda" and not config.resume:           # batch and patch sized for the card, by rank 0
        sized = size_for_the_card(config, given, device, model_spec(config)) if rank == 0 else ""
        sized, config.batch_size, config.patch_size, config.learning_rate = distributed.from_rank0(
            (sized, config.batch_size, config.patch_size, config.learning_rate), world)
        notes += [sized] if sized else []
        config.check(given)                                   # --grad-accum and the rest against the new batch
    finished = False
    try:
        if not config.resume:
            # decided once, by rank 0: each rank formatting its own time could name another folder
            name, problem = "", ""
            if rank == 0:
                try:
                    name = free_run_name(config.run or f"{config.model}_{time.strftime('%Y%m%d_%H%M%S')}",
                                         explicit="run" in given)
                except FlagError as err:
                    problem = str(err)
            config.run, problem = distributed.from_rank0((name, problem), world)
            if problem:
                raise FlagError(problem)
        run_dir = run_dir_for(config)
        existed = run_dir.exists()
        try:
            Trainer(config, device, rank, world, checkpoint, notes, printed).fit()
        except UserError:
            if rank == 0 and not existed and not (run_dir / layout.CHECKPOINT).exists():
                shutil.rmtree(run_dir, ignore_errors=True)   # a run that never trained leaves no folder
            raise
        finished = True
    finally:
        distributed.cleanup(world, finished)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # torchrun stops its workers with SIGTERM: exit through the finally blocks (cache removed)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    code = run_main(main)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # everything is written, closed and the process group destroyed: leave without the
        # interpreter's teardown, where the communication library's C++ threads could still be
        # joined during static destruction ("terminate called without an active exception")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
