"""audio extractors (one file per backbone family)."""
