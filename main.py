"""ProxyCLIP command line: `python main.py test --config configs/voc21.yaml`, `python main.py predict --config configs/demo.yaml`."""
from proxyclip.cli import cli_main

if __name__ == "__main__":
    cli_main()
