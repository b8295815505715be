"""Live detectors (incidents, fatigue, drafting, damage, mistakes): one plugin each behind a registry."""

# Importing the plugin modules registers them.
from pitbox_appliance.detectors import damage, drafting, fatigue, incidents, mistakes
from pitbox_appliance.detectors.base import (
    DETECTOR_CHANNELS,
    DETECTORS,
    POOL_FRAMES,
    BatchContext,
    Detector,
    DetectorSet,
    Emission,
    LapContext,
    register_detector,
)

__all__ = [
    "DETECTORS",
    "DETECTOR_CHANNELS",
    "POOL_FRAMES",
    "BatchContext",
    "Detector",
    "DetectorSet",
    "Emission",
    "LapContext",
    "damage",
    "drafting",
    "fatigue",
    "incidents",
    "mistakes",
    "register_detector",
]
