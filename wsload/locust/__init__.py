"""Everything that touches Locust: users, the run lifecycle, the recording of measurements,
options and the web UI. The rest of wsload runs without Locust."""
