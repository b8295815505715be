"""Sponsor exposure: the livery config, SponsorExposureTracker and the per-race sponsor report."""
