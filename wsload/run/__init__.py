"""A run's results: typed records, the writer of the run folder, run.json, and its readers."""
