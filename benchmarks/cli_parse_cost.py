"""What settling a command line costs: the parser's full and prefix parses, and the wall time of `--print_config`.

    python benchmarks/cli_parse_cost.py [REPO ...]        (default: this checkout; e.g. a worktree of an older commit)

Each REPO runs in its own interpreter (its own `proxyclip` first on the path), back to back, so the numbers of two
commits come from one invocation on one machine. A parse is a call of jsonargparse's `parse_args` / `parse_object`;
a prefix parse is one made with `_skip_validation=True` (the old settlement's lenient parses of argv prefixes). The
time is the median of `--repeat` calls of `cli_main(... --print_config)` in one process, after one warm-up call
(imports and the first parser build are not counted).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CASES = {
    "proxyclip voc21": ["test", "--config", "configs/voc21.yaml", "--model", "configs/model/default.yaml"],
    "trident voc21, model-side prob_thd": ["test", "--config", "configs/voc21.yaml", "--model",
                                           "configs/model/trident_vitb16.yaml", "--model.segmentor.init_args.prob_thd",
                                           "0.3"],
}

# run inside REPO's interpreter: counts the parses of one call, then times `repeat` calls
_PROBE = r"""
import contextlib, io, json, statistics, sys, time
import jsonargparse
from proxyclip.commands.cli import cli_main

counts = {"full": 0, "prefix": 0}
def counted(name):
    original = getattr(jsonargparse.ArgumentParser, name)
    def wrapper(self, *args, **kwargs):
        if self.prog == "proxyclip":              # the CLI's own parser, not the parsers jsonargparse builds inside
            counts["prefix" if kwargs.get("_skip_validation") else "full"] += 1
        return original(self, *args, **kwargs)
    setattr(jsonargparse.ArgumentParser, name, wrapper)
for name in ("parse_args", "parse_object"):
    counted(name)

def once(args):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli_main([*args, "--print_config"])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code

cases, repeat = json.loads(sys.argv[1]), int(sys.argv[2])
found = {}
for name, args in cases.items():
    once(args)                                               # warm-up: imports, first parser
    counts.update(full=0, prefix=0)
    once(args)
    parses = dict(counts)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        once(args)
        times.append(time.perf_counter() - start)
    found[name] = {**parses, "seconds": statistics.median(times)}
print(json.dumps(found))
"""


def measure(repo: Path, repeat: int) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(repo))
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(CASES), str(repeat)], cwd=repo, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repos", nargs="*", type=Path, default=[Path(__file__).resolve().parent.parent])
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    results = {str(repo): measure(repo, options.repeat) for repo in options.repos}
    for repo, cases in results.items():
        for name, found in cases.items():
            print(f"{repo:<24} {name:<36} full {found['full']:>2}  prefix {found['prefix']:>2}  "
                  f"{found['seconds'] * 1000:7.1f} ms")
    if len(results) == 2:
        (old, before), (new, after) = results.items()
        for name in CASES:
            print(f"{name}: {new} / {old} time ratio {after[name]['seconds'] / before[name]['seconds']:.2f}")


if __name__ == "__main__":
    main()
