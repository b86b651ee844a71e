"""Dataclass configs as command lines: every field is a --flag with help text.

    @dataclass
    class PredictConfig:
        tile: int = field(default=0, metadata={"help": "tile size in LR pixels (0 = automatic)"})

    config = parse_config(PredictConfig, "Super-resolve test images.", argv)

Field names map to flags with dashes (`batch_size` -> `--batch-size`); bools
become `--flag / --no-flag`; unknown and abbreviated flags are an error. A field's
`group` puts it under a heading of --help (and of a recipe file: parse_with_file);
an `internal` field is recorded with the config but is no flag.
"""
import argparse
import dataclasses
import sys
import typing


CHANNELS_LAST_HELP = ("channels-last memory format, faster convolutions (training steps: on CUDA, and on a CPU "
                      "with the bf16 it chose; validation and prediction: on CPU and GPU)")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help with each option's default, once: not where the help text already says its
    default (or argparse's BooleanOptionalAction added one), not for an empty default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, "", [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """A command-line mistake is one line on stderr, exit 2, with the nearest flag for a
    misspelt one ("did you mean --epochs?"), not the usage dump above it."""

    def error(self, message):
        import difflib
        hint = ""
        if message.startswith("unrecognized arguments:"):
            wrong = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("--")]
            near = difflib.get_close_matches(wrong[0], list(self._option_string_actions), n=1) if wrong else []
            hint = f" (did you mean {near[0]}?)" if near else ""
        self.exit(2, f"error: {message}{hint}; `{self.prog} --help` lists the flags\n")


def build_parser(config_class, description: str, positional: str = None) -> argparse.ArgumentParser:
    # allow_abbrev=False: `--epoch 7` is an error, not a silent `--epochs 7` that `given_fields`
    # (and so --resume and the demo preset) would not see as given
    parser = OneLineParser(description=description, allow_abbrev=False, formatter_class=DefaultsFormatter)
    hints = typing.get_type_hints(config_class)
    sections = {}
    for f in dataclasses.fields(config_class):
        if f.metadata.get("internal"):
            continue
        group = f.metadata.get("group", "")
        if group and group not in sections:
            sections[group] = parser.add_argument_group(f"{group} (a recipe's [{group}])")
        target = sections.get(group, parser)
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata.get("help", "")
        if f.name == positional:
            target.add_argument(f.name, nargs="+" if kind == list else None, help=help_text)
            continue
        flags = ["--" + f.name.replace("_", "-"), *f.metadata.get("aliases", [])]
        if kind is bool:
            target.add_argument(*flags, default=default, action=argparse.BooleanOptionalAction, help=help_text)
        elif kind == list:      # --weights a b, or --weights a --weights b; one value a flag beside positionals
            target.add_argument(*flags, nargs=1 if positional else "+", action="extend", default=default,
                                help=help_text)
        else:
            target.add_argument(*flags, type=kind, default=default, help=help_text,
                                choices=f.metadata.get("choices"))
    return parser


def parse_config(config_class, description: str, argv=None, positional: str = None):
    """Parse argv (None = sys.argv) into an instance of `config_class`."""
    args = build_parser(config_class, description, positional).parse_args(argv)
    return config_class(**vars(args))


def parse_with_file(config_class, description: str, argv) -> tuple:
    """Parse argv like parse_config, with `--config FILE` (a TOML recipe,
    srx4.core.config_file) read first: the file's values replace the defaults, the command
    line overrides the file. Returns (config, given): for every field the file or the
    command line sets, where it was set ("--epochs" or "configs/x.toml: epochs"), for
    the messages that name it. The file's sha256 goes into `config_sha256`."""
    from srx4.core.config_file import check_choices, read_config_file
    from srx4.core.errors import FlagError
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--config", default="")
    recipe = early.parse_known_args(argv)[0].config
    parser = build_parser(config_class, description)
    from_file, digest = read_config_file(recipe, config_class) if recipe else ({}, "")
    parser.set_defaults(**from_file)
    config = config_class(**vars(parser.parse_args(argv)))
    if recipe:
        config.config_sha256 = digest
    given = {name: f"{recipe}: {name}" for name in from_file}
    given.update({name: "--" + name.replace("_", "-") for name in given_fields(config_class, argv)})
    for name, allowed in check_choices(config, config_class):
        raise FlagError(f"{given.get(name, name)} = {getattr(config, name)!r}: {allowed}")
    return config, given


def option(default, help_text: str, choices=None, aliases=(), group: str = "", internal: bool = False):
    """A dataclass field with a default, help text, optional choices, extra flag names, the
    group it is listed under, and `internal` (kept with the config, never a flag)."""
    meta = {"help": help_text, "aliases": list(aliases), "group": group, "internal": internal}
    if choices:
        meta["choices"] = choices
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def given_fields(config_class, argv) -> set:
    """Names of the fields this command line sets explicitly (aliases and --no-x included)."""
    actions = build_parser(config_class, "")._option_string_actions
    return {actions[a.split("=")[0]].dest for a in map(str, argv)
            if a.split("=")[0] in actions and a.startswith("--")}


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
