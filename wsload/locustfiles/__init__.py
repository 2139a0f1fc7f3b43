"""The locustfiles wsload ships, as package data: ``locust -f`` takes their path (``wsload
--help`` prints where they are), so they work outside a checkout too."""
