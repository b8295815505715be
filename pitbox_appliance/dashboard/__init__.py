"""The NiceGUI pit-wall dashboard: live state from MQTT, pages for touchscreen and tablets."""
