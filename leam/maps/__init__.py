"""Maps: the attribution engine (LEAM and rival CAM methods, saliency), occlusion sensitivity, hooks,
aggregation."""

from leam.maps.aggregate import AGGREGATIONS, DEFAULT_AGGREGATION, aggregate_maps, minmax_normalize
from leam.maps.attribution import DEFAULT_DIRECTION, Attribution, AttributionResult
from leam.maps.hooks import capture_activations, layer_shapes, resolve_layers
from leam.maps.leam import DIRECTIONS, LEAM, LeamResult, layer_map
from leam.maps.methods import CAM_METHODS, gradcam_map, gradxact_map, leam_map
from leam.maps.occlusion_map import occlusion_forwards, occlusion_sensitivity

__all__ = [
    "AGGREGATIONS",
    "CAM_METHODS",
    "DEFAULT_AGGREGATION",
    "DEFAULT_DIRECTION",
    "DIRECTIONS",
    "LEAM",
    "Attribution",
    "AttributionResult",
    "LeamResult",
    "aggregate_maps",
    "capture_activations",
    "gradcam_map",
    "gradxact_map",
    "layer_map",
    "layer_shapes",
    "leam_map",
    "minmax_normalize",
    "occlusion_forwards",
    "occlusion_sensitivity",
    "resolve_layers",
]
