"""Locust user classes of wsload, for locustfiles of your own (``from users.chat import
ChatUser``). They live in ``wsload.locust``; these modules re-export them."""
