"""Driver-PC shim: reads sim telemetry and forwards it to the pit appliance over MQTT."""
