"""Capacity runs: the step plan (pure) that a Locust load shape drives."""
