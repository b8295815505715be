"""The post-race pipeline: finished sessions → compact → sync → report → ``session_report_ready``."""
