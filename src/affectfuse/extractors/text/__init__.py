"""text extractors (one file per backbone family)."""
