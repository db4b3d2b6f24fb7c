"""Writes: every change to the catalog goes through these functions."""
