"""The command line as a list of arguments, and what its prefixes parse to.

An argument is an option and its value (`--model x.yaml`, `--data.init_args.root=DIR`). What an argument changed
is read from the parsed configuration, before and after it, whatever its spelling (a flag, a model file, a whole
config, inline YAML): the CLI decides what runs from parsed configs, never from the text of the options.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

SUBCOMMANDS = ("test", "predict")
PRINT_CONFIG = "--print_config"
CONFIG_OPTIONS = ("--config", "-c")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_NUMBER = re.compile(r"-\.?\d")      # a negative number is a value, not an option
_UNSET = object()
_MARKER = "<set before this argument>"


@dataclass(frozen=True)
class Argument:
    """argv[start:end]: an option, `key`, and its value (None for a bare flag)."""

    start: int
    end: int
    key: str
    value: str | None

    @property
    def is_file(self) -> bool:
        """A config file (`--config F`, or `--model` / `--data` given a file) rather than a value or inline YAML."""
        if self.key in CONFIG_OPTIONS:
            return True
        return self.key in ("--model", "--data") and str(self.value).endswith(CONFIG_SUFFIXES)


def is_option(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not _NUMBER.match(token)


def split_arguments(argv: Sequence[str], start: int = 0) -> list[Argument]:
    """The arguments of argv[start:], each from its option to the next option."""
    starts = [i for i in range(start, len(argv)) if is_option(argv[i])]
    found = []
    for first, end in zip(starts, starts[1:] + [len(argv)]):
        key, equals, value = argv[first].partition("=")
        found.append(Argument(first, end, key, value if equals else (argv[first + 1] if end > first + 1 else None)))
    return found


def spellings(dotted: str) -> set[str]:
    """Every option that can set the value at `dotted` (e.g. "model.segmentor.init_args.method"): a whole config
    (--config, -c), each section above it (a file or inline YAML: --model, --model.segmentor, ...), the option itself,
    its spelling without `init_args` (jsonargparse reads both), and the class_path of each class on the way (a new
    class starts again from its defaults)."""
    parts = dotted.split(".")
    short = [part for part in parts if part != "init_args"]
    found = set(CONFIG_OPTIONS)
    found.update("--" + ".".join(parts[:i]) for i in range(1, len(parts) + 1))
    found.update("--" + ".".join(short[:i]) for i in range(1, len(short) + 1))
    found.update("--" + ".".join([*parts[:i], "class_path"]) for i, part in enumerate(parts) if part == "init_args")
    return found


def asks_for_help(argv: Sequence[str]) -> bool:
    """`-h`, `--help` or jsonargparse's `--<key>.help CLASS`: parsing prints the help, nothing runs."""
    return any(t in ("-h", "--help") or (is_option(t) and t.partition("=")[0].endswith(".help")) for t in argv)


def without_print_config(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(argv without `--print_config[=flags]`, those tokens, to go at the end): the CLI settles the command, then
    prints it. After the subcommand, a bare `--print_config` takes the next token as its flags unless it is an option."""
    kept, removed = [], []
    subcommand = subcommand_index(argv)
    skip_next = False
    for i, token in enumerate(argv):
        if skip_next:
            removed.append(token)
            skip_next = False
        elif token.partition("=")[0] == PRINT_CONFIG:
            removed.append(token)
            after = subcommand is not None and i > subcommand
            skip_next = after and token == PRINT_CONFIG and i + 1 < len(argv) and not is_option(argv[i + 1])
        else:
            kept.append(token)
    return kept, removed


def subcommand_index(argv: Sequence[str]) -> int | None:
    return next((i for i, token in enumerate(argv) if token in SUBCOMMANDS), None)


class CommandLine:
    """argv and its parses: the whole (validated, raising the user's mistakes) and prefixes (lenient, cached)."""

    def __init__(self, parser: Any, argv: Sequence[str]):
        self.parser, self.argv = parser, list(argv)
        self.subcommand_at = subcommand_index(self.argv)
        self.subcommand = None if self.subcommand_at is None else self.argv[self.subcommand_at]
        self.arguments = [] if self.subcommand_at is None else split_arguments(self.argv, self.subcommand_at + 1)
        self._prefixes: dict[int, Any] = {}

    def parse(self) -> Any:
        """The whole command line, parsed as the run will parse it (errors raise)."""
        return self.parser.parse_args(self.argv)

    def before(self, end: int) -> Any:
        """The subcommand's configuration from argv[:end], not validated; None when that prefix does not parse."""
        if end not in self._prefixes:
            try:
                parsed = self.parser.parse_args(self.argv[:end], _skip_validation=True)[self.subcommand]
            except Exception:  # noqa: BLE001 - a prefix may stop where the whole does not (a value before its class)
                parsed = None
            self._prefixes[end] = parsed
        return self._prefixes[end]

    def sets(self, argument: Argument, dotted: str, marker: Any = _MARKER) -> bool:
        """Whether `argument` sets the value at `dotted`, also to the value it already had: it changes the value, or a
        marker value put just before it does not survive it (one more parse, only when the value did not change).
        `marker` must fit the option's type (a dict for a dict option), else every argument counts as setting it."""
        before, after = self.before(argument.start), self.before(argument.end)
        if before is None or after is None or get(before, dotted, _UNSET) != get(after, dotted, _UNSET):
            return True
        marked = [*self.argv[:argument.start], option(dotted, marker), *self.argv[argument.start:argument.end]]
        try:
            return get(self.parser.parse_args(marked, _skip_validation=True)[self.subcommand], dotted) != marker
        except Exception:  # noqa: BLE001 - the marker does not fit the option's type: the value is not a path
            return True

    def text(self, argument: Argument) -> str:
        return " ".join(self.argv[argument.start:argument.end])

    def inserted(self, at: int, tokens: Sequence[str]) -> "CommandLine":
        """The command line with `tokens` inserted before argv[at]; the parses of the prefixes up to `at`, which
        are unchanged, come with it (each prefix parse takes tens of milliseconds, and every DDP process repeats them)."""
        line = CommandLine(self.parser, [*self.argv[:at], *tokens, *self.argv[at:]])
        line._prefixes = {end: parsed for end, parsed in self._prefixes.items() if end <= at}
        return line


def option(key: str, value: Any) -> str:
    """`--key=value`, as the parser reads it back: a string as it is, anything else as JSON (null, 0.9, [..])."""
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


def get(config: Any, dotted: str, default: Any = None) -> Any:
    """`config.a.b.c` for "a.b.c", `default` where a key is missing (or a section is None)."""
    node = config
    for key in dotted.split("."):
        if node is None or not hasattr(node, "get"):
            return default
        node = node.get(key, default)
    return node


def absolute(path: Any) -> Path:
    """A path jsonargparse recorded (its Path_* types give their absolute form through os.fspath)."""
    return Path(os.fspath(path)).absolute()
