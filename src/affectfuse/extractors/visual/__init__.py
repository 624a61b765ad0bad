"""visual extractors (one file per backbone family)."""
