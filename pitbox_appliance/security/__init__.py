"""Access control of the appliance: its TLS certificate authority, device pairing and revocation."""
