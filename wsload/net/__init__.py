"""Sockets: the gevent adapter that runs a protocol session over a real connection, and the
negative probes that send what a protocol session never would."""
