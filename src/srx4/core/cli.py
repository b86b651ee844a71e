"""Dataclass configs as command lines: every field is a --flag with help text.

    @dataclass
    class PredictConfig:
        tile: int = field(default=0, metadata={"help": "tile size in LR pixels (0 = automatic)"})

    config = parse_config(PredictConfig, "Super-resolve test images.", argv)

Field names map to flags with dashes (`batch_size` -> `--batch-size`); bools
become `--flag / --no-flag`; unknown and abbreviated flags are an error.
"""
import argparse
import dataclasses
import sys
import typing


CHANNELS_LAST_HELP = ("channels-last memory format, faster convolutions (training steps: on CUDA only; "
                      "validation and prediction: on CPU and GPU)")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help with each option's default, once: not where the help text already says its
    default (or argparse's BooleanOptionalAction added one), not for an empty default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, "", [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def build_parser(config_class, description: str, positional: str = None) -> argparse.ArgumentParser:
    # allow_abbrev=False: `--epoch 7` is an error, not a silent `--epochs 7` that `given_fields`
    # (and so --resume and the demo preset) would not see as given
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     formatter_class=DefaultsFormatter)
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata.get("help", "")
        if f.name == positional:
            parser.add_argument(f.name, nargs="+" if kind == list else None, help=help_text)
            continue
        flags = ["--" + f.name.replace("_", "-"), *f.metadata.get("aliases", [])]
        if kind is bool:
            parser.add_argument(*flags, default=default, action=argparse.BooleanOptionalAction, help=help_text)
        elif kind == list:
            parser.add_argument(*flags, nargs="+", default=default, help=help_text)
        else:
            parser.add_argument(*flags, type=kind, default=default, help=help_text,
                                choices=f.metadata.get("choices"))
    return parser


def parse_config(config_class, description: str, argv=None, positional: str = None):
    """Parse argv (None = sys.argv) into an instance of `config_class`; a `quiet` field
    that is set silences every progress bar of the process."""
    args = build_parser(config_class, description, positional).parse_args(argv)
    config = config_class(**vars(args))
    if getattr(config, "quiet", False):
        from srx4.core.progress import set_quiet
        set_quiet()
    return config


def option(default, help_text: str, choices=None, aliases=()):
    """A dataclass field with a default, help text, optional choices and extra flag names."""
    meta = {"help": help_text, "aliases": list(aliases)}
    if choices:
        meta["choices"] = choices
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def given_fields(config_class, argv) -> set:
    """Names of the fields this command line sets explicitly (aliases and --no-x included)."""
    actions = build_parser(config_class, "")._option_string_actions
    return {actions[a.split("=")[0]].dest for a in argv if a.split("=")[0] in actions and a.startswith("--")}


def run_main(main, argv=None) -> int:
    """Run an entry script's `main(argv)`: a UserError (srx4.core.errors) becomes one line
    `error: ...` on stderr and its exit code (2: unusable input or settings, 1: the job's
    result refused); any other exception is a bug and propagates with its traceback."""
    from srx4.core.errors import UserError
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
