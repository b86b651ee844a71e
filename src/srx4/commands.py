"""The console commands of `pip install -e .` (pyproject.toml's [project.scripts]): each runs
its script of src/ as `python src/<script>.py` would, with the same argv, output and exit
code, so `srx4-train --config configs/demo.toml` and `python src/train.py --config
configs/demo.toml` are one program.

    srx4-train  srx4-predict  srx4-submission  srx4-score  srx4-submit  srx4-evaluate
    srx4-prepare-data  srx4-super-resolve  srx4-inspect  srx4-export  srx4-download

The scripts stay files of the clone (the kernels pack them, and they run without any
install), so the commands need the editable install of that clone.
"""
import runpy
import sys
from pathlib import Path

SCRIPTS = {"train": "train.py", "predict": "predict.py", "submission": "make_submission.py", "score": "score.py",
           "submit": "submit.py", "evaluate": "evaluate.py", "prepare-data": "prepare_data.py",
           "super-resolve": "super_resolve.py", "inspect": "inspect_run.py", "export": "export.py",
           "download": "download.py"}
SOURCE = Path(__file__).resolve().parents[1]      # src/: the scripts beside the package


def run(command: str):
    """Run src/<script> for `srx4-<command>` as __main__ (its own exit code)."""
    script = SOURCE / SCRIPTS[command]
    if not script.is_file():
        sys.exit(f"error: srx4-{command} runs {script.name} of the clone it was installed from, and {script} is "
                 f"not there: install with `pip install -e .` in a clone of the repo")
    sys.argv[0] = f"srx4-{command}"
    runpy.run_path(str(script), run_name="__main__")


def _command(name):
    return lambda: run(name)


train, predict, submission, score, submit, evaluate, prepare_data, super_resolve, inspect, export, download = (
    _command(name) for name in SCRIPTS)
