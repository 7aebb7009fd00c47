"""ProxyCLIP: training-free open-vocabulary semantic segmentation (Lan et al., ECCV 2024)."""
from .builder import build_segmentor
from .errors import ProxyCLIPError
from .metrics import SegmentationMetric, intersect_and_union
from .segmentor import ProxyCLIPSegmentor

__all__ = ["build_segmentor", "ProxyCLIPError", "ProxyCLIPSegmentor", "SegmentationMetric", "intersect_and_union"]
__version__ = "0.1.0"
