"""Live detectors (incidents, fatigue, drafting, damage, mistakes): one plugin each behind a registry.

Each module of this package that declares a detector (``@register_detector``) is
found by the registry itself: a new detector is one new file here.
"""

from pitbox_appliance.detectors.base import (
    DETECTORS,
    POOL_FRAMES,
    BatchContext,
    Detector,
    DetectorSet,
    DetectorSpec,
    Emission,
    LapContext,
    detector_channels,
    detectors_in_order,
    register_detector,
)

#: Channels the detectors read (the core decodes them with its own).
DETECTOR_CHANNELS = detector_channels()

__all__ = [
    "DETECTORS",
    "DETECTOR_CHANNELS",
    "POOL_FRAMES",
    "BatchContext",
    "Detector",
    "DetectorSet",
    "DetectorSpec",
    "Emission",
    "LapContext",
    "detector_channels",
    "detectors_in_order",
    "register_detector",
]
