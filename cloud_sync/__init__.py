"""Cloud sync: the durable outbox of compacted sessions, uploaded to S3 (or a directory) and verified."""
