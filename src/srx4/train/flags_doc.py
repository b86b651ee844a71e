"""docs/flags.md, generated from TrainConfig: every train.py flag by group, with its default,
choices and help (`python docs/make_flags.py` writes it; tests/test_docs.py fails when the
file is stale)."""
import dataclasses

from srx4.train.config import GROUPS, TrainConfig

TITLES = {"model": "Model", "data": "Data", "optimisation": "Optimisation", "precision": "Precision and speed",
          "run": "The run's files and views", "kaggle": "The Kaggle session"}


def flag_of(field) -> str:
    name = "--" + field.name.replace("_", "-")
    names = [name, *field.metadata.get("aliases", [])]
    if field.type in (bool, "bool"):
        names = [f"{name} / --no-{field.name.replace('_', '-')}"]
    return ", ".join(f"`{n}`" for n in names)


def render() -> str:
    lines = ["# train.py flags", "",
             "Generated from `TrainConfig` (`src/srx4/train/config.py`) by `python docs/make_flags.py`; "
             "do not edit by hand. Every flag is also a key of a recipe (`configs/*.toml`), under its group's "
             "heading or at the top level (`num_blocks = 8` or `num-blocks = 8`). `python src/train.py --help` "
             "prints the same.", ""]
    by_group = {g: [f for f in dataclasses.fields(TrainConfig)
                    if f.metadata.get("group") == g and not f.metadata.get("internal")] for g in GROUPS}
    for group in GROUPS:
        lines += [f"## {TITLES[group]} (`[{group}]`)", "", "| flag | default | what |", "|---|---|---|"]
        for f in by_group[group]:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = "" if default in ("", None) else f"`{default}`"
            choices = f.metadata.get("choices")
            text = f.metadata.get("help", "").replace("%%", "%").replace("|", "\\|")
            if choices:
                text += " (one of: " + ", ".join(f"`{c}`" for c in choices if c != "") + ")"
            lines.append(f"| {flag_of(f)} | {shown} | {text} |")
        lines.append("")
    return "\n".join(lines)

