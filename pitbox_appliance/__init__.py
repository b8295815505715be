"""The pit appliance: ingest, storage, live state, API and dashboard."""
