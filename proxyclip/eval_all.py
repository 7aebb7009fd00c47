"""`python -m proxyclip.eval_all ...`: the evaluate-all command (proxyclip/commands/eval_all.py), also `proxyclip-eval-all`."""
from proxyclip.commands.entry_points import eval_all

if __name__ == "__main__":
    raise SystemExit(eval_all())
