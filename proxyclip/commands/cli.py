"""LightningCLI for ProxyCLIP: `test` evaluates a benchmark, `predict` segments images; there is no `fit`.

    proxyclip test --config configs/voc21.yaml          (or: python main.py test ...)
"""
from __future__ import annotations

import sys

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ..shell.module import ProxyCLIPModule
from ..shell.prediction_writer import PredictionWriter
from ..shell.result_writer import ResultWriter
from .user_errors import find_user_error

# data attribute -> where it goes when the classes are instantiated. The dataset config is the one source of a
# benchmark's vocabulary and protocol values (docs/method.md §7): the segmentor is built with them.
LINKS = {
    "class_names": "model.segmentor.init_args.class_names",
    "prob_thd": "model.segmentor.init_args.prob_thd",
    "crop_size": "model.segmentor.init_args.crop_size",
    "stride": "model.segmentor.init_args.stride",
    "background_name": "model.background_name",
    "ignore_index": "model.ignore_index",
    "dataset_name": "model.dataset_name",
}

TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "outputs"}},
    "enable_checkpointing": False,
    "default_root_dir": "outputs",  # where config.yaml goes even with --trainer.logger false
}


class ProxyCLIPCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"test": {"model", "dataloaders", "datamodule"}, "predict": {"model", "dataloaders", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ResultWriter, "result_writer")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")  # --prediction_writer.save_probabilities ...
        for source, target in LINKS.items():
            parser.link_arguments(f"data.{source}", target, apply_on="instantiate")


def cli_main(args: list[str] | None = None) -> ProxyCLIPCLI | None:
    """Run the CLI; a user error (bad config, data or weights) prints one paragraph, exit code 2."""
    try:
        return ProxyCLIPCLI(
            ProxyCLIPModule,
            LightningDataModule,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except Exception as exc:  # noqa: BLE001 - user errors become one paragraph, bugs keep their traceback
        error = find_user_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> int:
    """Entry point of the `proxyclip` command (the CLI object `cli_main` returns is not an exit code)."""
    cli_main()
    return 0


if __name__ == "__main__":
    main()
