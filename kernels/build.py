"""Build the Kaggle kernels from src/: the kernels hold no logic of their own.

Kaggle uploads only the file named in `code_file`, so each kernel is one script
with every file of src/ packed inside it (a base64 zip), unpacked at start.
Out: kernels/build/<slug>/ with the script and kernel-metadata.json, for
     `kaggle kernels push -p kernels/build/<slug>`.

- train kernel: train (torchrun over both GPUs when there are two) -> predict
  -> make_submission, leaving /kaggle/working/submission.csv;
- predict kernel: predict from weights attached as a dataset or an earlier
  kernel's output (found under /kaggle/input), then make_submission.
- assets dataset (--make-assets): the shipped weights (weights/<name>/) and the
  wheels of the optional packages (spandrel, for foreign .pth models) as a Kaggle
  dataset folder; a kernel that has it attached (--assets user/slug) installs the
  wheels offline and finds the weights by name (--init-weights srresnet-x4).

    python kernels/build.py --user alice --competition gnr-638
    python kernels/build.py --user alice --competition gnr-638 --train-args "--epochs 60 --time-limit 10"
    python kernels/build.py --user alice --make-assets      # then: kaggle datasets create -p kernels/build/srx4-assets
    python kernels/build.py --user alice --competition gnr-638 --assets alice/srx4-assets \
        --train-args "--init-weights srresnet-x4 --epochs 30 --time-limit 10"
    python kernels/build.py --user alice --competition gnr-638 --assets alice/srx4-assets \
        --config configs/gnr638-t4x2.toml            # a recipe; --train-args still overrides it

A recipe (--config) is checked here (a misspelt key stops the build, in one line) and
packed into the train kernel, which trains with it, plans the session by its [kaggle]
settings (session_hours, predict_tta, margin_minutes, csv_format), and predicts with x8
TTA only when that still fits in what is left of the session.
"""
import argparse
import base64
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = (Path(__file__).parent / "kernel_template.py").read_text()
ASSETS_MARKER = "SRX4_ASSETS"          # the file by which a kernel recognises the assets dataset
OPTIONAL_WHEELS = ["spandrel"]         # pure-Python; its own dependencies are on Kaggle's image


def pack_sources() -> str:
    """Every .py under src/ as a base64 zip (deterministic order and timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((REPO / "src").rglob("*.py")):
            info = zipfile.ZipInfo(str(path.relative_to(REPO)), date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, path.read_bytes())
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def metadata(user: str, slug: str, title: str, code_file: str, competition: str, sources: dict) -> dict:
    return {
        "id": f"{user}/{slug}", "title": title, "code_file": code_file, "language": "python",
        "kernel_type": "script", "is_private": True, "enable_gpu": True, "enable_tpu": False,
        "enable_internet": False, "machine_shape": "NvidiaTeslaT4",
        "competition_sources": [competition] if competition else [],
        "dataset_sources": sources.get("datasets", []), "kernel_sources": sources.get("kernels", []),
    }


def build_assets(out_dir: Path, user: str, weights_root: Path, wheels=None, slug: str = "srx4-assets") -> Path:
    """The assets dataset folder: weights/<name>/ from `weights_root` (best.safetensors,
    model.json, CARD.md) and wheels/ (`wheels`, or `pip download` of OPTIONAL_WHEELS at
    the installed versions). Returns the folder, for `kaggle datasets create -p`."""
    folder = out_dir / slug
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "wheels").mkdir(parents=True)
    names = []
    for source in sorted(p for p in Path(weights_root).glob("*") if (p / "best.safetensors").is_file()):
        (folder / "weights" / source.name).mkdir(parents=True)
        for name in ("best.safetensors", "model.json", "CARD.md"):
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / "weights" / source.name / name)
        names.append(source.name)
    if wheels is None:
        from importlib.metadata import PackageNotFoundError, version
        wanted = []
        for package in OPTIONAL_WHEELS:
            try:
                wanted.append(f"{package}=={version(package)}")
            except PackageNotFoundError:
                wanted.append(package)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
                               str(folder / "wheels"), *wanted], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"pip download {' '.join(wanted)} failed (needs the package index): "
                             f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    else:
        for wheel in wheels:
            shutil.copyfile(wheel, folder / "wheels" / Path(wheel).name)
    (folder / ASSETS_MARKER).write_text("srx4 assets: weights/ and wheels/ for the srx4 kernels\n")
    meta = {"title": "srx4 assets", "id": f"{user}/{slug}", "licenses": [{"name": "other"}],
            "description": "Shipped srx4 weights (" + (", ".join(names) or "none") + ") and wheels of optional "
                           "packages. Weights trained on T91 + BSD200 (BSDS: research and educational use only); "
                           "see each weights/<name>/CARD.md."}
    (folder / "dataset-metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def read_recipe(path) -> tuple:
    """(the recipe's text, its [kaggle] settings for the kernel) of a --config file, checked
    by train.py's own reader: a problem is one line (exit 2), and no kernel is built."""
    sys.path.insert(0, str(REPO / "src"))
    from srx4.core.config_file import read_config_file
    from srx4.core.errors import UserError
    from srx4.train.config import TrainConfig
    try:
        values, _digest = read_config_file(path, TrainConfig)
        TrainConfig(**values).check({name: f"{path}: {name}" for name in values})
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    kaggle = {name: values[name] for name in ("session_hours", "predict_tta", "margin_minutes", "csv_format")
              if name in values}
    return Path(path).read_text(), kaggle, values.get("init_weights", "")


def check_start(recipe, init_weights: str, assets, datasets):
    """A recipe that starts from weights must bring them: shipped names come with the assets
    dataset (refused without --assets), a foreign file with a dataset (a warning: --assets or
    --train-args may point elsewhere)."""
    from srx4.core import paths
    if not init_weights:
        return
    if init_weights in paths.shipped_names() and not assets:
        print(f"error: {recipe}: init_weights = {init_weights!r} is shipped weights, which reach a kernel in the "
              f"assets dataset: build it once with --make-assets, then add --assets YOU/srx4-assets", file=sys.stderr)
        raise SystemExit(2)
    if init_weights.endswith((".pth", ".pt", ".safetensors", ".ckpt")) and not datasets:
        print(f"warning: {recipe}: init_weights = {init_weights!r} must be attached: add --dataset YOU/SLUG "
              f"(a Kaggle dataset holding it)", file=sys.stderr)


def build(out_dir: Path, user: str, competition: str, train_args: str, predict_args: str,
          weights_datasets=(), weights_kernels=(), assets=(), recipe=None, datasets=()) -> list:
    """Write both kernels; returns their folders. `assets`: dataset ids of build_assets
    folders, attached to both; `datasets`: more datasets for both (a foreign model's .pth);
    `recipe`: a --config file for the train kernel."""
    packed = pack_sources()
    text, kaggle, start = read_recipe(recipe) if recipe else ("", {}, "")
    check_start(recipe, start, assets, datasets)
    extra = list(assets) + list(datasets)
    made = []
    for mode, slug, title, sources in (
            ("train", f"{competition}-srx4-train", f"{competition} srx4 train", {"datasets": extra}),
            ("predict", f"{competition}-srx4-predict", f"{competition} srx4 predict",
             {"datasets": list(weights_datasets) + extra, "kernels": list(weights_kernels)})):
        folder = out_dir / slug
        folder.mkdir(parents=True, exist_ok=True)
        code_file = f"{slug.replace('-', '_')}.py"
        script = (TEMPLATE.replace("__MODE__", mode)
                  .replace("__TRAIN_ARGS__", json.dumps(shlex.split(train_args)))
                  .replace("__PREDICT_ARGS__", json.dumps(shlex.split(predict_args)))
                  .replace("__RECIPE_NAME__", Path(recipe).name if recipe else "")
                  .replace("__RECIPE__", base64.b64encode(text.encode()).decode("ascii"))
                  .replace("__KAGGLE_SETTINGS__", json.dumps(kaggle))
                  .replace("__SOURCES__", packed))
        (folder / code_file).write_text(script)
        meta = metadata(user, slug, title, code_file, competition, sources)
        (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        made.append(folder)
    return made


def main():
    parser = argparse.ArgumentParser(description="Build the Kaggle kernels from src/.")
    parser.add_argument("--user", default=os.environ.get("KAGGLE_USERNAME", ""),
                        help="your Kaggle user name (default: $KAGGLE_USERNAME)")
    parser.add_argument("--competition", default="", help="the competition's URL slug")
    parser.add_argument("--make-assets", action="store_true",
                        help="build the assets dataset folder (shipped weights + optional wheels) instead")
    parser.add_argument("--assets", action="append", default=[],
                        help="both kernels: the assets dataset (user/slug) made with --make-assets")
    parser.add_argument("--config", default="",
                        help="a recipe (configs/NAME.toml) for the train kernel: its settings, and its [kaggle] "
                             "session plan; --train-args overrides it")
    parser.add_argument("--train-args", default=None,
                        help="arguments for train.py in the train kernel (default without --config: --epochs 100 "
                             "--session-hours 12, a plan that keeps it inside the 12 h session)")
    parser.add_argument("--dataset", action="append", default=[],
                        help="both kernels: one more dataset (user/slug) to attach, e.g. a foreign model's .pth")
    parser.add_argument("--predict-args", default="", help="arguments for predict.py in both kernels")
    parser.add_argument("--weights-dataset", action="append", default=[],
                        help="predict kernel: a dataset (user/slug) holding best.safetensors + model.json")
    parser.add_argument("--weights-kernel", action="append", default=[],
                        help="predict kernel: an earlier kernel (user/slug) whose output holds the weights")
    parser.add_argument("--out", default=str(REPO / "kernels" / "build"))
    args = parser.parse_args()
    if not args.user:
        parser.error("--user (or KAGGLE_USERNAME) is required: kernel ids are <user>/<slug>")
    if args.make_assets:
        sys.path.insert(0, str(REPO / "src"))
        from srx4.core import paths
        folder = build_assets(Path(args.out), args.user, paths.weights_dir())
        print(f"built {folder}: kaggle datasets create -p {folder} --dir-mode zip  (then --assets "
              f"{args.user}/{folder.name} when building the kernels)")
        return
    if not args.competition:
        parser.error("--competition is required (or --make-assets)")
    train_args = args.train_args if args.train_args is not None else (
        "" if args.config else "--epochs 100 --session-hours 12")
    for folder in build(Path(args.out), args.user, args.competition, train_args, args.predict_args,
                        args.weights_dataset, args.weights_kernel, args.assets, args.config or None, args.dataset):
        print(f"built {folder}: kaggle kernels push -p {folder}")


if __name__ == "__main__":
    main()
