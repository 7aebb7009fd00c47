"""`python -m proxyclip.masks ...`: the region-mask command (proxyclip/commands/masks.py), also `proxyclip-masks`."""
from proxyclip.commands.entry_points import masks

if __name__ == "__main__":
    raise SystemExit(masks())
