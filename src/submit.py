"""Validate a submission CSV, then upload it with `kaggle competitions submit`.

In:  --csv (default submissions/submission.csv), --competition SLUG, --message,
     --lr-dir the test LR folder to validate against (default: as predict.py).
Out: the upload, or one line saying what is wrong (exit 1): an invalid CSV, no
     kaggle CLI, no credentials, rules not accepted, no network. The message
     names the run whose weights made the CSV (from submissions/log.csv, written
     by make_submission.py), and the upload is appended to that log.

    python src/submit.py --competition gnr-638 -m "srresnet, 100 epochs"
"""
import sys
from dataclasses import dataclass
from pathlib import Path

from srx4.core import paths
from srx4.submit import submission_log
from srx4.core.io import file_sha256
from srx4.core.errors import FlagError, MissingData
from srx4.core.cli import option, parse_config, run_main
from srx4.submit.kaggle_cli import run_kaggle
from srx4.submit.submission import validate_csv


@dataclass
class SubmitConfig:
    competition: str = option("", "the competition's URL slug (kaggle.com/competitions/<slug>)")
    csv: str = option("", "submission CSV (default: submissions/submission.csv)")
    message: str = option("srx4 submission", "submission description", aliases=["-m"])
    lr_dir: str = option("", "test LR folder to validate against (default: as predict.py)")
    scale: int = option(4, "upscaling factor")
    skip_validation: bool = option(False, "upload without checking the CSV first")


def main(argv=None):
    config = parse_config(SubmitConfig, "Validate and upload a submission CSV.", argv)
    csv_path = Path(config.csv) if config.csv else paths.submission_csv()
    if not config.competition:
        raise FlagError("--competition SLUG is required (the name in the competition's URL)")
    if not csv_path.is_file():
        raise MissingData(f"{csv_path}: no such CSV; run python src/make_submission.py first")
    if not config.skip_validation:
        lr_dir = Path(config.lr_dir) if config.lr_dir else paths.default_test_dir()
        rows = validate_csv(csv_path, lr_dir, config.scale)
        print(f"{csv_path}: {rows} valid rows")
    digest = file_sha256(csv_path)
    made = submission_log.entry_for(csv_path, digest)
    message = config.message
    if made and made.get("run"):
        message = f"{message} [run {made['run']}" + (", tta" if made.get("tta") == "True" else "") + "]"
    else:
        print(f"note: {csv_path} is not in {submission_log.log_path()} with these bytes: the upload cannot "
              f"be traced to a run (write it with make_submission.py)", file=sys.stderr)
    print(run_kaggle(["competitions", "submit", config.competition, "-f", str(csv_path), "-m", message]))
    submission_log.append_entry(event="submitted", csv=csv_path.resolve(), sha256=digest,
                                competition=config.competition, message=message,
                                **{k: (made or {}).get(k, "") for k in ("rows", "run", "run_dir", "weights",
                                                                        "weights_sha256", "tta", "png_dir")})
    print(f"recorded in {submission_log.log_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
