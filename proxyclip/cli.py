"""LightningCLI for ProxyCLIP: `test` evaluates a benchmark, `predict` segments images; there is no `fit`."""
from __future__ import annotations

import sys

import yaml
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from .errors import find_user_error
from .lit_module import ProxyCLIPModule
from .prediction_writer import PredictionWriter

# data attribute -> model argument: the dataset config alone sets the vocabulary and the protocol (METHOD §7)
LINKS = {
    "class_names": "class_names",
    "display_names": "display_names",
    "prob_thd": "prob_thd",
    "crop_size": "crop_size",
    "stride": "stride",
    "ignore_index": "ignore_index",
    "dataset_name": "dataset_name",
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
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")  # --prediction_writer.save_probabilities ...
        for source, target in LINKS.items():
            parser.link_arguments(f"data.{source}", f"model.{target}", apply_on="instantiate")

    def _attach_config(self) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_validation=True))
        self.model.run_config = config.get(self.subcommand, config)

    def before_test(self) -> None:
        self._attach_config()

    def before_predict(self) -> None:
        self._attach_config()


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

