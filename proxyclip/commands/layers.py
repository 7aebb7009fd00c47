"""The command line as layers, in the one order of precedence the CLI runs them in.

    the method's defaults  <  the preset  <  the benchmark config  <  the method's protocol file  <  command-line values

The arguments keep the order given (jsonargparse: the later argument wins). The configs (`--config F`, `--model
F.yaml`, `--data F.yaml`, or a whole model or data given inline) come first (a benchmark config names its preset:
`model: model/default.yaml`, so a later `--model` replaces it); the protocol file the CLI adds for the method and
benchmark (protocols.py) goes right after the last of them; the values given as options after it (`--data.init_args.
prob_thd 0.3`, inline YAML) come last, so they win over every file. (An option given before a config is part of the
configs: a later config, the protocol file included, may set it again, as any later argument does.) The parser reads
the layers once without the protocol file, to learn the method and the benchmark, and once with it.

What each layer gives is read from the layer itself (the file's YAML, the option's value), without a parse: which
layer set a value last decides where a relative path is relative to (data_paths.py), who is named in a refusal
(links.py, protocols.py), and how the method's options merge key by key (merged_options.py). Keys are compared
without `init_args` (jsonargparse reads `--model.segmentor.method` and `--model.segmentor.init_args.method` alike).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..config_files import option_value, read_config
from ..errors import ProxyCLIPError
from .command_line import CONFIG_OPTIONS, CONFIG_SUFFIXES, Argument, get, split_arguments, subcommand_index

# options whose value is one dict (merged key by key by the CLI, never flattened into keys)
DICT_VALUES = ("model.segmentor.method_kwargs",)
# sections a config file may give as the name of another file, relative to it (`model: model/default.yaml`)
SECTIONS = ("model", "data", "trainer", "model.segmentor")
# the options that give the run's model or data as a whole (a preset, a data config), a file or inline YAML
WHOLE_SECTIONS = ("--model", "--data")


def normal(dotted: str) -> str:
    """The key without `init_args`: "model.segmentor.init_args.method" -> "model.segmentor.method"."""
    return ".".join(part for part in dotted.split(".") if part != "init_args")


def _yaml(text: str | None) -> Any:
    """A command-line value as jsonargparse reads it (YAML), the text itself where it is not YAML."""
    if text is None:
        return True                                  # a bare flag (--overwrite)
    return option_value(text)


def _read(path: Path) -> Any:
    try:
        return read_config(path)                     # the one reader of config files
    except ProxyCLIPError:
        return None                                  # the parser reports an unreadable file in its own words


@dataclass(frozen=True)
class Layer:
    """One argument, `key` and its `tokens`, and the values it gives: {normal key: value}, and for a config file
    {normal key: the file that gave it} (a benchmark config's `data:` section comes from the file it names)."""

    key: str
    tokens: tuple[str, ...]
    is_file: bool
    values: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def is_config(self) -> bool:
        """A config: a file, or a whole section given inline (`--model '{segmentor: ...}'` is the preset)."""
        return self.is_file or self.key in WHOLE_SECTIONS

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def sets(self, dotted: str) -> bool:
        return normal(dotted) in self.values

    def get(self, dotted: str, default: Any = None) -> Any:
        return self.values.get(normal(dotted), default)

    def file_of(self, dotted: str) -> Path | None:
        return self.files.get(normal(dotted))


def _flatten(node: Any, prefix: str, file: Path | None, layer: Layer) -> None:
    """Put `node`, the value given at `prefix`, into `layer` key by key, following a section's file reference."""
    if isinstance(node, str) and file is not None and prefix in SECTIONS and node.endswith(CONFIG_SUFFIXES):
        referenced = file.parent / node
        if referenced.is_file():
            node, file = _read(referenced), referenced
    if isinstance(node, dict) and prefix not in DICT_VALUES:
        for key, value in node.items():
            _flatten(value, normal(f"{prefix}.{key}" if prefix else str(key)), file, layer)
        return
    if prefix == "data" and isinstance(node, str):
        prefix = "data.class_path"                   # `--data VOCDataModule`: the class by its name
    layer.values[prefix] = node
    if file is not None:
        layer.files[prefix] = file


def layer_of(argv: Sequence[str], argument: Argument) -> Layer:
    """What `argument` (argv[argument.start:argument.end]) gives."""
    layer = Layer(argument.key, tuple(argv[argument.start:argument.end]), argument.is_file)
    prefix = "" if argument.key in CONFIG_OPTIONS else normal(argument.key.lstrip("-"))
    path = Path(str(argument.value)) if argument.is_file else None
    if path is not None and path.is_file():
        _flatten(_read(path.absolute()), prefix, path.absolute(), layer)
    else:
        _flatten(_yaml(argument.value), prefix, None, layer)
    return layer


def layers_of(argv: Sequence[str]) -> list[Layer]:
    return [layer_of(argv, argument) for argument in split_arguments(argv)]


class LayeredLine:
    """The command line in the order of precedence: `head` (up to the subcommand), the config files, the protocol
    layers the CLI adds, the command-line values."""

    def __init__(self, argv: Sequence[str], protocol: Sequence[str] = ()):
        argv = list(argv)
        at = subcommand_index(argv)
        self.subcommand = None if at is None else argv[at]
        self.head = argv if at is None else argv[:at + 1]
        given = [] if at is None else [layer_of(argv, a) for a in split_arguments(argv, at + 1)]
        configs = [i for i, layer in enumerate(given) if layer.is_config]
        split = configs[-1] + 1 if configs else 0
        self.files, self.values = given[:split], given[split:]
        self.protocol = layers_of(protocol)

    @property
    def argv(self) -> list[str]:
        return [*self.head, *(token for layer in self.layers for token in layer.tokens)]

    @property
    def layers(self) -> list[Layer]:
        return [*self.files, *self.protocol, *self.values]

    def with_protocol(self, tokens: Sequence[str]) -> "LayeredLine":
        line = LayeredLine([])
        line.subcommand, line.head, line.files, line.values = self.subcommand, self.head, self.files, self.values
        line.protocol = layers_of(tokens)
        return line

    def setters(self, dotted: str) -> Iterator[tuple[int, Layer]]:
        """(position, layer) of each layer that sets `dotted`, in order."""
        return ((i, layer) for i, layer in enumerate(self.layers) if layer.sets(dotted))

    def last(self, dotted: str) -> Layer | None:
        """The layer that set `dotted` last (the value that runs), None where no layer did (a default)."""
        found = [layer for _, layer in self.setters(dotted)]
        return found[-1] if found else None

    def final(self, dotted: str, parsed: Any, default: Any = None) -> Any:
        """The value of `dotted` once the protocol layers are in, from `parsed`, the parse without them: a value
        option sets it after them, else the last protocol layer that sets it, else what the parse holds."""
        if not any(layer.sets(dotted) for layer in self.values):
            found = [layer.get(dotted) for layer in self.protocol if layer.sets(dotted)]
            if found:
                return found[-1]
        return get(parsed, dotted, default)
