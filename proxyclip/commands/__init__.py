"""The commands: `proxyclip test|predict` (LightningCLI), `proxyclip-eval-all`, `proxyclip-weights`.

The only wing that imports both the method (`proxyclip.method`, `proxyclip.shell`) and the data (`datamodules`).
"""
