"""Capacity runs, without Locust or pandas: the step plan a Locust load shape drives, the
service levels a step must keep, the step and SLO options, and the steps file's layout."""
