"""Tests of the fusion models."""
