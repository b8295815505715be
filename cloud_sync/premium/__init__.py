"""PremiumDataAPI: partner keys, rate limits, metering and the read-only HTTP API over the compacted sessions (DuckDB)."""
