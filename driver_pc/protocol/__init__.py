"""The wire contract between the driver-PC shim and the appliance: topics, messages, codec."""
