"""How a training run starts from its flags (train.py): the resumed checkpoint's settings,
--init-weights found and adopted, the bundled demo and its preset, a free run name, and
one warning naming the flags that have no effect here.

    config, checkpoint = settle(config, given)     # given: field -> where it was set
"""
import math
import os
from pathlib import Path

from srx4.core import layout, paths
from srx4.core.errors import FlagError, MissingData
from srx4.core.precision import for_training
from srx4.core.system import resolve_device
from srx4.models import ARCHS
from srx4.models.weights import WeightsError, load_model
from srx4.runs.checkpoint import load_checkpoint
from srx4.train.config import TrainConfig, from_saved


# The demo trains a small bicubic-residual model (each model's own demo_preset: SRResNet 4 x 32)
# that beats bicubic within minutes on 2 CPU cores.
DEMO_PRESET = dict(epochs=8, patches_per_image=32, learning_rate=5e-4, warmup_steps=50, checkpoint_every=0,
                   sample_every=4)
MODEL_FLAGS = {"model", "num_blocks", "channels", "bicubic_residual", "srcnn_kernels", "y_only"}


def say(line: str, printed: list):
    """Print a line now and keep it in `printed`: the run's log does not exist yet, and the
    Trainer writes these into train.log first."""
    print(line, flush=True)
    printed.append(line)


def apply_demo(config: TrainConfig, given: set, printed: list) -> TrainConfig:
    """Use the demo data and preset for every flag the user did not give (`given`)."""
    from srx4.data.demo import build_demo
    demo = build_demo(paths.demo_dir(), config.scale)
    if config.data == "demo":
        say(f"training on the bundled demo in {demo} (scikit-image photos), as --data demo asks", printed)
    else:
        say(f"no competition data found (data/train/{{lr,hr}}): training on the bundled demo in {demo} "
            f"(scikit-image photos); put your data in data/train to train on it", printed)
    config.data = str(demo / "train")
    shape = {} if config.init_weights else ARCHS[config.model].demo_preset   # fine-tuning keeps the weights' model
    preset = {k: v for k, v in {**shape, **DEMO_PRESET}.items() if k not in given}
    for key, value in preset.items():
        setattr(config, key, value)
    if preset:
        say("demo preset, for the flags you did not give (a small model that trains in minutes on a CPU): "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in preset.items()), printed)
    if not config.run:
        config.run = "demo"
    return config


def adopt_init_weights(config: TrainConfig, given_flags: set) -> TrainConfig:
    """--init-weights: the model is the one the weights were trained as. A model flag given
    on the command line that asks for another model is an error (WeightsError), not a
    silent mismatch; --model and --scale follow the weights."""
    _, model_config = load_model(config.init_weights)
    given = given_flags & MODEL_FLAGS
    name = model_config["name"]
    wanted = {"model": config.model} if "model" in given else {}
    if name in ARCHS and name != "spandrel":
        wanted.update(ARCHS[name].options_from_flags({k: getattr(config, k) for k in given}))
    have = {"model": name, **model_config}
    if name == "srcnn" and "srcnn_kernels" in given:
        wanted["kernel_sizes"] = [int(k) for k in config.srcnn_kernels.split("-")]
    clash = {k: v for k, v in wanted.items() if have.get(k, v) != v or (k != "model" and k not in have)}
    if name == "spandrel":       # a foreign model's shape is its file's: any model flag asks for another
        clash = {k: getattr(config, k) for k in sorted(given)}
    if clash:
        raise WeightsError(f"{config.init_weights}: the weights are {describe(model_config)}; "
                           + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in clash.items())
                           + " asks for another model (drop the flag, or train from scratch)")
    if "scale" in given_flags and config.scale != model_config["scale"]:
        raise WeightsError(f"{config.init_weights}: the weights are x{model_config['scale']}, not --scale {config.scale}")
    config.model, config.scale = name, int(model_config["scale"])
    return config


def describe(model_config: dict) -> str:
    from srx4.train.inspect import describe_model
    return describe_model(model_config)


def free_run_name(name: str, explicit: bool) -> str:
    """Never train over an earlier run: an explicit --run that exists is an error,
    an automatic name (the demo) gets the next free suffix: demo, demo_2, ..."""
    taken = lambda n: (paths.logs_dir() / n / layout.CHECKPOINT).exists()  # noqa: E731
    if not taken(name):
        return name
    if explicit:
        raise FlagError(f"{paths.logs_dir() / name} already holds a run: continue it with --resume "
                        f"{paths.logs_dir() / name / layout.CHECKPOINT}, or choose another --run")
    k = 2
    while taken(f"{name}_{k}"):
        k += 1
    return f"{name}_{k}"


def warn_idle(config: TrainConfig, given: dict, printed: list):
    """One warning line naming the given settings that have no effect under the others."""
    device = resolve_device(config.device)
    fp16 = for_training(device, config.amp, config.amp_dtype, config.channels_last, architecture=config.model).grad_scaler
    idle = config.without_effect(given, device.type == "cuda", fp16)
    if idle and int(os.environ.get("RANK", "0")) == 0:
        say("warning: no effect here: " + "; ".join(f"{given[name]} ({why})" for name, why in idle), printed)


def find_init_weights(config: TrainConfig, given: dict, printed: list):
    """--init-weights that is not here: for a bare file name, the file of that name attached
    under the Kaggle input; else one line naming the flag or the recipe's key, and what to
    attach (the recipe's `attach`)."""
    wanted = Path(config.init_weights)
    if wanted.exists() or paths.shipped_weights(config.init_weights):
        return
    found = (sorted((paths.kaggle_root() / "input").rglob(wanted.name))
             if paths.on_kaggle() and len(wanted.parts) == 1 else [])
    if found:
        say(f"init weights: {found[0]} (found under the Kaggle input)", printed)
        config.init_weights = str(found[0])
        return
    shipped = ", ".join(paths.shipped_names()) or "none"
    where = given.get("init_weights", "--init-weights")
    raise WeightsError(f"{where} = {config.init_weights!r}: not found here, in weights/ (shipped: {shipped}) or "
                       f"under the Kaggle input: " + (f"attach {config.attach}" if config.attach else
                                                      "give a run folder, a weights file or a shipped name"))


def settle(config: TrainConfig, given: dict, printed: list):
    """(config, checkpoint or None): a resume takes the checkpoint's settings, except what
    this command line (or --config) gives; a new run finds its --init-weights and its data
    (the competition's, else the demo with its preset, unless --no-demo)."""
    if config.resume:
        checkpoint = load_checkpoint(config.resume)
        overrides = {k: getattr(config, k) for k in [*given, *(["config_sha256"] if config.config else [])]}
        return from_saved(checkpoint["train_config"], overrides), checkpoint
    if config.init_weights:
        find_init_weights(config, given, printed)
        config = adopt_init_weights(config, set(given))
    if not config.data or config.data == "demo":
        found = None if config.data == "demo" else paths.default_train_dir()
        if found is None and not config.demo and config.data != "demo":
            raise MissingData(f"no competition data found (data/train/{{lr,hr}}, or lr/ and hr/ under "
                              f"{paths.kaggle_root() / 'input'}) and --no-demo: attach the competition's data")
        config = apply_demo(config, set(given), printed) if found is None else config
        config.data = config.data or str(found)
    return config, None


# On a GPU, when neither is given, the step is sized for the card: the LR patch GPU_PATCH and the
# largest power-of-two batch (at most GPU_MAX_BATCH) whose training memory fits half the memory this
# process may use. Training keeps every activation for the backward pass: TRAIN_MEMORY_FACTOR x the
# inference peak the model declares (ModelSpec.bytes_per_lr_pixel), fp32-sized (reduced precision
# leaves room). A T4 (14 GiB) gets SRResNet-16 batch 32 of 48 px (about 1 TFLOP a step); an H100
# batch 256 (about 8): steps long enough to keep the card busy instead of waiting on launches.
GPU_PATCH, GPU_MAX_BATCH, TRAIN_MEMORY_FACTOR, REFERENCE_BATCH = 48, 256, 4, 16


def gpu_step_size(bytes_per_lr_pixel: int, free_bytes: int, batch, patch, learning_rate, largest_patch: int = 0):
    """(batch, patch, learning rate, why) for a GPU with `free_bytes` this process may use;
    `batch`, `patch` and `learning_rate` are the given values or None. The learning rate
    follows the batch by the square-root rule from the default's batch of REFERENCE_BATCH
    (Adam: lr x sqrt(batch / 16)), only when not given. `largest_patch`: the typical
    training image's shorter LR side (0 = unknown): the patch is never larger."""
    patch = patch or (min(GPU_PATCH, largest_patch) if largest_patch else GPU_PATCH)
    if batch is None:
        per_sample = bytes_per_lr_pixel * TRAIN_MEMORY_FACTOR * patch * patch
        fits = max(1, int(free_bytes * 0.5 // per_sample))
        batch = 1 << min(fits, GPU_MAX_BATCH).bit_length() - 1
        why = (f"{free_bytes / 2**30:.1f} GiB free, {per_sample / 2**20:.0f} MiB a {patch} px sample to train "
               f"(the model's {bytes_per_lr_pixel} B per LR pixel x {TRAIN_MEMORY_FACTOR}): half the memory, "
               f"a power of two, at most {GPU_MAX_BATCH}")
    else:
        why = "--batch-size given"
    if learning_rate is None:
        learning_rate = TrainConfig.learning_rate * math.sqrt(batch / REFERENCE_BATCH)
        why += f"; learning rate {TrainConfig.learning_rate:g} x sqrt({batch} / {REFERENCE_BATCH})"
    return batch, patch, learning_rate, why


def size_for_the_card(config: TrainConfig, given: dict, device, spec) -> str:
    """On a GPU, batch, patch and learning rate not given (flag or recipe) are set by
    `gpu_step_size`; returns the line saying what was chosen and why. Nothing changes on a
    CPU, on a resume, when batch and patch are both given, for the bundled demo (its preset
    is sized for minutes anywhere) and for --loss l1+vgg (VGG19's memory is not the model's)."""
    wanted = {"batch_size", "patch_size", "learning_rate"} - set(given)
    if device.type != "cuda" or config.resume or not {"batch_size", "patch_size"} & wanted:
        return ""
    demo = paths.demo_dir().resolve()
    if Path(config.data).resolve() == demo or demo in Path(config.data).resolve().parents:
        return ""
    if config.loss == "l1+vgg":
        return "step not sized for this GPU: --loss l1+vgg (VGG19's memory); --batch-size and --patch-size as given"
    from statistics import median
    from srx4.core import gpu_memory
    from srx4.data.pairs import scan_pairs
    pairs, _ = scan_pairs(config.data, config.scale)
    typical = int(median(min(p.lr_size) for p in pairs)) if pairs else 0
    batch, patch, rate, why = gpu_step_size(
        spec.bytes_per_lr_pixel, gpu_memory.free_bytes(device),
        None if "batch_size" in wanted else config.batch_size, None if "patch_size" in wanted else config.patch_size,
        None if "learning_rate" in wanted else config.learning_rate, typical)
    config.batch_size, config.patch_size, config.learning_rate = batch, patch, rate
    return f"step sized for this GPU: --batch-size {batch} --patch-size {patch} --learning-rate {rate:.3g} ({why})"


def model_spec(config: TrainConfig):
    """The ModelSpec of the model this run trains (its weights' with --init-weights)."""
    from dataclasses import asdict
    from srx4.models import build_model, model_config_from_flags
    if config.init_weights:
        return load_model(config.init_weights)[0].spec
    return build_model(model_config_from_flags(asdict(config))).spec
