"""naclip, as one folder: its last block and maths (block.py and the modules beside it), its per-benchmark values
(protocol/), its presets (presets/), its published numbers (published.yaml) and its documentation (README.md)."""
from . import block  # noqa: F401  (importing the block registers the method)
