"""The race simulator's parts: track geometry, channels, the car field, entries and ground truth."""
