"""The command line that runs: what the CLI parses is what runs, whatever the spelling.

From the command as given, in order: the shipped configs' README names resolved from any folder (configs.py), the
arguments put in the one order of precedence (layers.py: config files, then the protocol file, then command-line
values), the method's own protocol file added among them (protocols.py), linked segmentor values set on the model side
applied as the data options or refused (links.py), the method's options checked against it and another method's
refused (method_options.py), the relative paths of data config files resolved against their folders (data_paths.py),
and the protocol file recorded in the run's config. Each step reads the first parse and the layers; the additions are
ordinary command-line arguments, so `--print_config`, the saved config.yaml and metrics.json show exactly what runs,
and DDP's worker processes, which start again from the same command, settle it the same way.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..method.method_options import METHOD_OPTIONS, check_method_options
from .command_line import asks_for_help, option, without_print_config
from .common_protocol import KWARGS
from .configs import with_shipped_configs
from .data_paths import resolve_data_paths
from .layers import LayeredLine
from .links import apply_model_side_links
from .merged_options import merged_method_kwargs
from .protocols import METHOD, RECORD, add_method_protocol, refuse_record_by_hand

SEGMENTOR = "model.segmentor.init_args."


def parse_what_runs(parser: Any, argv: Sequence[str], links: Mapping[str, str], say: Callable[[str], None]) -> Any:
    """The parsed configuration of the command that runs; `say` gets the line that names the method's protocol file.
    Raises what the parser raises for a mistake, and a ProxyCLIPError for a value that would not run as given.
    Two parses at most: the command in its order of precedence without the protocol file (it says which method runs
    on which benchmark), then with the file and the values settled from the layers (`--print_config` prints that)."""
    argv = with_shipped_configs(list(argv))
    if asks_for_help(argv):
        return parser.parse_args(argv)
    argv, print_config = without_print_config(argv)
    line = LayeredLine(argv)
    config = parser.parse_args(line.argv)
    if line.subcommand is None:
        return config
    settled = config[line.subcommand]
    protocol, record, note = add_method_protocol(line, settled)
    line = line.with_protocol(protocol)
    refuse_record_by_hand(line, record)
    if note:
        say(note)
    added = apply_model_side_links(line, settled, links)
    method_kwargs = merged_method_kwargs(line)            # key by key, never wholesale (merged_options.py)
    if method_kwargs != line.final(KWARGS, settled):
        added.append(option(KWARGS, method_kwargs))
    options = {name: line.final(SEGMENTOR + name, settled) for name in METHOD_OPTIONS}
    check_method_options(str(line.final(METHOD, settled)), method_kwargs, **options)
    added += resolve_data_paths(line, settled)
    if line.final(RECORD, settled) != record:
        added.append(option(RECORD, record))
    if protocol or added or print_config:
        config = parser.parse_args([*line.argv, *added, *print_config])
    return config
