"""The command line as a list of arguments: an argument is an option and its value (`--model x.yaml`,
`--data.init_args.root=DIR`). What each argument gives, and the order the parser reads them in, is layers.py's.
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
