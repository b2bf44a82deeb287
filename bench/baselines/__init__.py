"""What users would write instead of the service: the baselines it is compared with."""
