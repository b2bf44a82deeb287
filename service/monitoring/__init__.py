"""Monitoring: the model-quality monitor and its windows, service telemetry, their routes."""

PREFIX = "focal_eval"  # every metric's name starts with it
