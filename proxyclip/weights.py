"""`python -m proxyclip.weights list|download CONFIG`: the weights command (proxyclip/commands/weights.py), also
`proxyclip-weights`."""
from proxyclip.commands.entry_points import weights

if __name__ == "__main__":
    raise SystemExit(weights())
