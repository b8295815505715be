"""Appliance core process: verify, decode, segment and store incoming telemetry."""
