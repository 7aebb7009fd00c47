"""ProxyCLIP command line: `python main.py test --config configs/voc21.yaml`, `python main.py predict --config configs/demo.yaml`.

The same command is installed as `proxyclip` (`proxyclip test --config ...`).
"""
from proxyclip.commands.cli import cli_main

if __name__ == "__main__":
    cli_main()
