"""LightningCLI for ProxyCLIP: `test` evaluates a benchmark, `predict` segments images; there is no `fit`.

    proxyclip test --config configs/voc21.yaml          (or: python main.py test ...)

What runs is settled from the parsed configuration before anything is built (what_runs.py).
"""
from __future__ import annotations

import sys
from typing import Any, Literal, Optional

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ..method.loading import WeightsUnavailable
from ..shell.module import ProxyCLIPModule
from ..shell.prediction_writer import PredictionWriter
from ..shell.result_writer import ResultWriter
from .command_line import SUBCOMMANDS, get
from .earlier_outputs import (OVERWRITE_FLAG, OVERWRITE_HELP, earlier_outputs, prediction_names, refuse_earlier_outputs,
                              remove_outputs)
from .entry_points import BEFORE_THE_RUN, launch_rank, say_interrupted
from .hardware import check_hardware
from .interrupts import run_interruptibly
from .listings import method_titles   # the help's lists of methods come from the registry (LAST_BLOCKS)
from .messages import ALL_MESSAGES_FLAG, argument_error_paragraph, show_all_messages, quiet_third_party
from .outputs import DEFAULT_ROOT, check_output_locations, route_outputs
from .common_protocol import PROTOCOL, PROTOCOL_HELP, PROTOCOLS
from .protocols import RECORD, RECORD_HELP
from .image_files_check import check_image_files
from .user_errors import find_user_error
from .weights import model_config_name
from .what_runs import parse_what_runs

# data attribute -> where it goes when the classes are instantiated. The dataset config is the one source of a
# benchmark's vocabulary and protocol values (docs/method.md §7): the segmentor is built with them. A segmentor value
# given on the model side is applied as the data option or refused (links.py), for every entry here.
LINKS = {
    "class_names": "model.segmentor.init_args.class_names",
    "prob_thd": "model.segmentor.init_args.prob_thd",
    "crop_size": "model.segmentor.init_args.crop_size",
    "stride": "model.segmentor.init_args.stride",
    "numerics": "model.segmentor.init_args.numerics",
    "background_name": "model.background_name",
    "ignore_index": "model.ignore_index",
    "dataset_name": "model.dataset_name",
}

TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": DEFAULT_ROOT}},
    "enable_checkpointing": False,
    "default_root_dir": DEFAULT_ROOT,  # where config.yaml goes even with --trainer.logger false
}

_MOST_USED = [
    ("--config configs/<benchmark>.yaml", "a benchmark with the paper's default model (configs/voc21.yaml, ...)"),
    ("--data.init_args.root DIR", "the dataset folder (e.g. /data/VOCdevkit/VOC2012)"),
    ("--data.init_args.check true", "check every file of the dataset before the model is built"),
    ("--model configs/model/<preset>.yaml", "another model (CLIP x VFM preset) or method ("
                                            f"{', '.join(method_titles(baselines_only=True))})"),
    ("--model.segmentor.method_kwargs '{...}'", "the method's own options, e.g. '{beta: 1.0}' for ProxyCLIP (every "
                                                "method's: --model.segmentor.help TrainingFreeSegmentor)"),
    ("--protocol original|common", "test only: each method's own per-benchmark values (original, the default) or one "
                                   "protocol for every method (common: configs/common/<benchmark>.yaml)"),
    ("--trainer.accelerator gpu --trainer.devices N --trainer.strategy ddp", "N GPUs"),
    ("--trainer.precision bf16-mixed", "mixed precision (fp32 is the exact reference)"),
    ("--model.output_dir DIR", "where results go (default: outputs/lightning_logs/version_N/)"),
    ("--overwrite", "replace the results of an earlier run in that folder (without it, such a folder is refused)"),
    (ALL_MESSAGES_FLAG, "also Lightning's notices and third-party warnings"),
]
DESCRIPTION = ("proxyclip: training-free open-vocabulary semantic segmentation (ProxyCLIP, and the "
               f"{', '.join(method_titles(baselines_only=True))} baselines). `proxyclip test --config configs/voc21.yaml --data.init_args.root DIR` evaluates a "
               "benchmark; `proxyclip predict --config configs/demo.yaml` segments your own images. The shipped configs "
               "are found by their README names (configs/..., configs/model/..., configs/data/...) from any folder; a "
               "local file of the same path wins. `proxyclip test --help` lists every option.")
SUBCOMMAND_DESCRIPTIONS = {
    "test": "Evaluate a benchmark (or your own dataset): mIoU, per-class IoU and the counts, written to metrics.json.",
    "predict": "Segment your own images with your own class names: label PNGs, overlays with a legend, legend JSON.",
}
EPILOG = "The options most runs need (the README's first sections show them in use):\n" + "\n".join(
    f"  {option:<40} {what}" if len(option) <= 40 else f"  {option}\n  {'':<40} {what}" for option, what in _MOST_USED)


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with the epilog's own line breaks kept (argparse would refill it into a paragraph)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


class ProxyCLIPCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The Trainer methods run as subcommands (command_line.SUBCOMMANDS), each with the arguments it is given."""
        return {name: {"model", "dataloaders", "datamodule"} for name in SUBCOMMANDS}

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's, listing each subcommand in this package's words (Lightning's would quote the Trainer's)."""
        self._subcommand_parsers = {}
        subcommands = parser.add_subcommands()
        for name in self.subcommands():
            self._subcommand_parsers[name] = self._prepare_subcommand_parser(self.trainer_class, name, **kwargs.get(name, {}))
            subcommands.add_subcommand(name, self._subcommand_parsers[name], help=SUBCOMMAND_DESCRIPTIONS[name])

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ResultWriter, "result_writer")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")  # --prediction_writer.save_probabilities ...
        parser.add_argument(f"--{PROTOCOL}", type=Literal[PROTOCOLS], default=PROTOCOLS[0], help=PROTOCOL_HELP)
        parser.add_argument(f"--{RECORD}", type=Optional[str], default=None, help=RECORD_HELP)
        for source, target in LINKS.items():
            parser.link_arguments(f"data.{source}", target, apply_on="instantiate")
        parser.add_argument(OVERWRITE_FLAG, action="store_true", help=OVERWRITE_HELP)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.config = parse_what_runs(parser, sys.argv[1:] if args is None else args, LINKS, say)

    def before_instantiate_classes(self) -> None:
        # Every output location is checked, and routed into --model.output_dir when one is given, before any model
        # is built: a bad folder, a missing GPU or an earlier run's results must not be found after an hour of work.
        config = self.config[self.subcommand] if self.subcommand else self.config
        route_outputs(config)
        check_output_locations(config)
        check_hardware(config, say)
        self._names = prediction_names(config.data) if self.subcommand == "predict" else []
        self._folder, self._earlier = earlier_outputs(config, self.subcommand, self._names)
        if self._earlier and not config.get("overwrite"):
            refuse_earlier_outputs(self._folder, self._earlier, self.subcommand, get(config, "trainer.num_nodes") or 1)
        check_image_files(config)                    # a method's files read one per image: all bad ones at once

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as exc:
            unavailable = find_user_error(exc)   # weights that cannot be fetched: name this run's model config
            name = model_config_name(self.config[self.subcommand] if self.subcommand else self.config)
            if isinstance(unavailable, WeightsUnavailable) and unavailable.config is None and name:
                raise unavailable.naming(name) from exc
            raise

    # LightningCLI runs a subcommand through the CLI's method of that name when there is one.
    def test(self, **kwargs: Any) -> None:
        self._run("test", kwargs)

    def predict(self, **kwargs: Any) -> None:
        self._run("predict", kwargs)
        if next(c for c in self.trainer.callbacks if isinstance(c, PredictionWriter)).skipped:
            raise SystemExit(1)                       # the writer has listed them; every good input was segmented

    def _run(self, subcommand: str, kwargs: dict[str, Any]) -> None:
        if launch_rank() == 0:
            remove_outputs(self._earlier)             # --overwrite: the earlier run's files go just before this run
        run_interruptibly(getattr(self.trainer, subcommand), self.trainer, subcommand, self._names, kwargs,
                          removed=self._earlier, new_folder=self._folder is None)


def say(line: str) -> None:
    """A line on stderr from one process (every process of a DDP run settles the same command)."""
    if launch_rank() == 0:
        print(line, file=sys.stderr)


def parser_kwargs() -> dict[str, Any]:
    """Errors raise (cli_main prints one paragraph instead of 50 lines of usage); `--help` ends with EPILOG."""
    sub = {"exit_on_error": False, "epilog": EPILOG, "formatter_class": HelpFormatter}
    return {"exit_on_error": False, "formatter_class": HelpFormatter, "description": DESCRIPTION, "prog": "proxyclip",
            **{name: dict(sub, description=text) for name, text in SUBCOMMAND_DESCRIPTIONS.items()}}


def cli_main(args: list[str] | None = None) -> ProxyCLIPCLI | None:
    """Run the CLI; a user error (bad config, data, weights or output folder) prints one paragraph, exit code 2;
    Ctrl-C prints one line (what is kept), exit code 130; `predict` that skipped unreadable inputs exits 1."""
    argv = sys.argv[1:] if args is None else list(args)
    if ALL_MESSAGES_FLAG in argv:
        show_all_messages()                      # inherited by DDP's worker processes through the environment
        argv = [a for a in argv if a != ALL_MESSAGES_FLAG]
    quiet_third_party()
    try:
        return ProxyCLIPCLI(
            ProxyCLIPModule,
            LightningDataModule,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=parser_kwargs(),
            args=argv,                           # DDP's workers start again from sys.argv and settle it the same way
        )
    except KeyboardInterrupt as exc:          # a RunInterrupted from the loop says what is kept
        raise SystemExit(say_interrupted(getattr(exc, "line", BEFORE_THE_RUN))) from None
    except Exception as exc:  # noqa: BLE001 - user errors become one paragraph, bugs keep their traceback
        message = argument_error_paragraph(exc) or find_user_error(exc)
        if message is None:
            raise
        if launch_rank() == 0:                                  # every process meets the error; one says it
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> int:
    """Entry point of the `proxyclip` command (the CLI object `cli_main` returns is not an exit code)."""
    cli_main()
    return 0


if __name__ == "__main__":
    main()
