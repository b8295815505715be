"""Getting messages across: the MQTT connection and the shim's disk spool."""
