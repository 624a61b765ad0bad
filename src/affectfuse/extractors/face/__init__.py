"""face extractors (one file per backbone family)."""
