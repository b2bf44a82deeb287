"""The HTTP exchange: bounded connections, bodies, JSON, and responses that hold their memory."""
