"""Cloud sync: compacted sessions to S3 (not built yet; see docs/STATUS.md)."""
