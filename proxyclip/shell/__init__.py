"""The Lightning shell around the method: the LightningModule, the metric, and the callbacks that write results."""
from .metric import SegmentationMetric, intersect_and_union
from .module import ProxyCLIPModule

__all__ = ["ProxyCLIPModule", "SegmentationMetric", "intersect_and_union"]
