"""Calling the `kaggle` command-line tool as a subprocess.

The kaggle package is never imported here: older versions exit at import time
when no credentials are set. Every failure becomes one line saying what to do.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from srx4.core.errors import UserError


class KaggleError(UserError, RuntimeError):
    exit_code = 1           # the Kaggle CLI failed (missing, no credentials, refused)
    """A kaggle CLI problem, said in one line."""


def credentials_problem():
    """None when credentials look present, else the one line saying what to set."""
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    if (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")) or os.environ.get("KAGGLE_API_TOKEN"):
        return None
    if (config_dir / "kaggle.json").is_file() or (config_dir / "access_token").is_file():
        return None
    return (f"no Kaggle credentials: put kaggle.json (Kaggle > Settings > API > Create New Token) in "
            f"{config_dir}/, or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN")


def run_kaggle(args, timeout=3600) -> str:
    """Run `kaggle ARGS...`; return its output or raise KaggleError with one line."""
    beside = Path(sys.executable).parent / "kaggle"   # a venv's kaggle when the venv is not activated
    exe = shutil.which("kaggle") or (str(beside) if beside.is_file() else None)
    if exe is None:
        raise KaggleError("the kaggle command is not on PATH: pip install -r requirements-kaggle.txt (an optional extra)")
    problem = credentials_problem()
    if problem:
        raise KaggleError(problem)
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KaggleError(f"kaggle {args[0]} {args[1]} timed out after {timeout}s") from None
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        lowered = text.lower()
        if "403" in text or "forbidden" in lowered:
            raise KaggleError("Kaggle refused (403): accept the competition's rules on its web page first")
        if "401" in text or "unauthorized" in lowered:
            raise KaggleError("Kaggle refused the credentials (401): make a new API token")
        if any(s in lowered for s in ("connection", "resolve", "network", "timed out", "max retries")):
            raise KaggleError("cannot reach kaggle.com: no network (on a Kaggle kernel, turn internet on)")
        last = text.splitlines()[-1] if text else f"exit status {done.returncode}"
        raise KaggleError(f"kaggle {' '.join(args[:2])} failed: {last}")
    return text
