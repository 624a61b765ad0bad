"""Inference on new videos with trained runs."""
