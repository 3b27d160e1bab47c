"""Helpers shared by the unit and kube tests (no operator imports)."""
