"""The locustfiles wsload ships, as package data: ``locust -f`` takes their path
(``wsload locustfile NAME`` prints it), so they work outside a checkout too."""
