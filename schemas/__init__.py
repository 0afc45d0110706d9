"""Cadenza."""
