"""``GET /dashboard``: a live page of each source's window and lifetime metrics, from /summary."""
