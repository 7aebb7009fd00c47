"""ProxyCLIP command line: `python main.py test --config configs/voc21.yaml`, `python main.py predict --config configs/demo.yaml`.

The same command is installed as `proxyclip` (`proxyclip test --config ...`). It starts in a light module, so that
Ctrl-C while torch and Lightning load gives one line and exit code 130 (proxyclip/commands/entry_points.py).
"""
from proxyclip.commands.entry_points import proxyclip

if __name__ == "__main__":
    raise SystemExit(proxyclip())
