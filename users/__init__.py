"""Locust user classes of wsload: each one a kind of browser tab or client."""
