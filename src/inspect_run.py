"""Inspect a training run, a checkpoint or a weights file; compare several runs.

In:  one or more of: a run folder (logs/a), its last.ckpt, a .safetensors file, or
     the name of shipped weights under weights/. `logs/*` compares every run there.
Out: for one: the model and its parameter count, the training settings, epoch and
     step, the best validation PSNR / score and its epoch, the final check against
     bicubic, split sizes, hygiene counts, training time, whether (and how) it can
     be resumed, and the CSVs made from it and submitted (submissions/log.csv).
     For several: one table of the runs with the settings that differ between them.
     --json prints the same as JSON for scripts. Anything else gets one line, exit 2.

    python src/inspect_run.py logs/demo
    python src/inspect_run.py logs/*            # compare runs
    python src/inspect_run.py logs/a/last.ckpt --json
"""
import json
import sys
from dataclasses import asdict, dataclass

from srx4.core.errors import FlagError
from srx4.core.cli import option, parse_config, run_main
from srx4.train.inspect import InspectError, NotARun, describe, describe_model

IGNORED_SETTINGS = {"run", "resume", "device", "workers", "threads", "cache_dir", "tracker"}


@dataclass
class InspectConfig:
    targets: list = option([], "run folders, last.ckpt or .safetensors files, or shipped weights names")
    json: bool = option(False, "print JSON (one object, or a list for several targets)")


def figure(value, fmt=".3f"):
    return "-" if value is None else format(value, fmt)


def text_for(info: dict) -> str:
    lines = [f"{info['path']} ({info['kind']})",
             f"model: {describe_model(info['model'])}; {info['parameters'] / 1e6:.3f} M parameters"]
    if info["kind"] == "weights":
        if info.get("card"):
            lines.append(info["card"].strip())
        return "\n".join(lines)
    cfg, best, final = info["train_config"], info["best"], info["final"]
    lines.append(f"epoch {info['epoch']} of {info['epochs']}, step {info['step']} ({info['samples_seen']} samples, "
                 f"last saved by {info['world']} process(es)); {info['seconds']:.0f} s of training and validation")
    lines.append(f"best validation ({info['select']}): epoch {best['epoch']}, PSNR {figure(best['psnr'])} dB, "
                 f"score {figure(best['score'])} (bicubic {figure(info['bicubic']['psnr'])} dB, "
                 f"{figure(info['bicubic']['score'])})")
    if final:
        lines.append(f"final check on {final['final_check_on']}: PSNR {final['model']['psnr']:.3f} dB vs bicubic "
                     f"{final['bicubic']['psnr']:.3f} ({final['gain_db']:+.3f} dB)"
                     + (" -- WORSE THAN BICUBIC" if final["worse_than_bicubic"] else "")
                     + (f"; stopped: {final['stopped']}" if final["stopped"] else ""))
    else:
        lines.append("final check: not yet (the run has not finished)")
    hygiene = info["hygiene"]
    problems = ", ".join(f"{n} {k}" for k, n in hygiene["problems"].items()) or "none"
    lines.append(f"data: {cfg.data}: {hygiene['used']} pairs used, left out: {problems}; split "
                 f"{info['split']['train']} train / {info['split']['val']} val (seed {cfg.seed})")
    if cfg.config:
        lines.append(f"recipe: {cfg.config} (sha256 {cfg.config_sha256[:16]}); a resume needs no --config")
    lines.append(f"resumable: {info['resumable']}")
    subs = info["submissions"]
    lines.append(f"submissions: {subs['csvs']} CSV(s) made, {len(subs['submitted'])} submitted"
                 + "".join(f"\n  - {m}" for m in subs["submitted"]))
    lines.append("settings: " + " ".join(f"{k}={v}" for k, v in asdict(cfg).items() if v not in ("", None)))
    return "\n".join(lines)


def table_for(infos: list) -> str:
    """Markdown table of runs: figures, time, and the settings that differ."""
    runs = [i for i in infos if i["kind"] == "run"]
    settings = [asdict(i["train_config"]) for i in runs]               # TrainConfig, one per run
    keys = sorted({k for s in settings for k in s} - IGNORED_SETTINGS)
    differ = [k for k in keys if len({json.dumps(s.get(k)) for s in settings}) > 1]
    head = ["run", "model", "M params", "epochs", "best PSNR", "best score", "vs bicubic (dB)", "minutes",
            "submitted"] + differ
    rows = []
    for i, setting in zip(runs, settings):
        gain = i["final"]["gain_db"] if i["final"] else None
        rows.append([i["run"], i["model"].get("name", "?"), f"{i['parameters'] / 1e6:.3f}",
                     f"{i['epoch']}/{i['epochs']}", figure(i["best"]["psnr"]), figure(i["best"]["score"]),
                     figure(gain, "+.3f"), f"{i['seconds'] / 60:.1f}", str(len(i["submissions"]["submitted"]))]
                    + [str(setting.get(k)) for k in differ])
    rows.sort(key=lambda r: -float(r[4]) if r[4] != "-" else 0)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    others = [i["path"] for i in infos if i["kind"] != "run"]
    return "\n".join(lines + ([f"(weights files, not runs: {', '.join(others)})"] if others else []))


def main(argv=None):
    config = parse_config(InspectConfig, "Inspect or compare training runs.", argv, positional="targets")
    if not config.targets:
        raise FlagError("give a run folder, a last.ckpt or a .safetensors (or several runs: logs/*)")
    infos, failed = [], []
    for target in config.targets:
        try:
            infos.append(describe(target))
        except NotARun as err:     # logs/* also matches last_run.json, eval/, ...: passed over there
            if len(config.targets) == 1:
                failed.append(str(err))
        except InspectError as err:
            failed.append(str(err))
    if len(config.targets) > 1:   # a broken run among several: named, the rest compared
        for message in failed:
            print(f"skipped: {message}", file=sys.stderr)
    elif failed:
        raise InspectError(failed[0])
    if config.json:
        plain = [{**i, "train_config": asdict(i["train_config"])} if i["kind"] == "run" else i for i in infos]
        print(json.dumps(plain[0] if len(config.targets) == 1 else plain, indent=1, default=str))
    elif len(config.targets) == 1:
        print(text_for(infos[0]))
    else:
        print(table_for(infos))
    return 0 if infos else 2


if __name__ == "__main__":
    sys.exit(run_main(main))
