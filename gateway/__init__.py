"""The edge verification gateway: verify every request, then stream from private storage."""
