"""Every file name a run folder (logs/<run>/) and the submissions folder hold, in one
place: the writers and the readers (predict.py, inspect_run.py, trackers, kernels) use
these names, never their own literals.

logs/<run>/
    best.safetensors + model.json   the best weights and how to rebuild their model
    last.ckpt                       everything to resume (srx4.runs.checkpoint, srx4.train.state)
    config.json                     the run's TrainConfig as a dict
    split.json  hygiene.json        the train/validation split; files left out and why
    train.log  metrics.csv          every line printed; one row per epoch
    summary.json                    the final check against bicubic
    plan.json                       the session plan (--session-hours, --time-limit), for the kernel
    report.html  curves.png  samples/epoch_NNN.png
logs/last_run.json                  the run train.py finished last
submissions/log.csv  submissions/last_prediction.json  <png folder>/.srx4-weights.json
"""
WEIGHTS = "best.safetensors"
MODEL_CONFIG = "model.json"
CHECKPOINT = "last.ckpt"
CONFIG = "config.json"
SPLIT = "split.json"
HYGIENE = "hygiene.json"
PAIR_FINDINGS = ".pair_findings.rank{rank}.json"   # streaming under DDP: what rank N found, for rank 0's hygiene.json
TRAIN_LOG = "train.log"
METRICS = "metrics.csv"
SUMMARY = "summary.json"
PLAN = "plan.json"
REPORT = "report.html"
CURVES = "curves.png"
SAMPLES = "samples"
LAST_RUN = "last_run.json"
LAST_PREDICTION = "last_prediction.json"
SUBMISSION_LOG = "log.csv"
PNG_MANIFEST = ".srx4-weights.json"
PNG_MANIFEST_LR_DIR = "lr_dir"          # the manifest's key for the LR folder the PNGs were made from


def final_check_on(summary: dict) -> str:
    """What a summary.json's final check scored ("validation", or training images); runs
    written before 0.12 call the key checked_on."""
    return summary.get("final_check_on") or summary.get("checked_on", "?")
