"""Derived driving analyses computed on the appliance from stored or live telemetry channels."""

from pitbox_appliance.analysis.driver_inputs import InputMetrics, input_metrics

__all__ = ["InputMetrics", "input_metrics"]
