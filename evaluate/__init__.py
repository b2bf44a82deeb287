"""Evaluate datasets, not requests: merge and compute statistics, score through a server.

Torch-free, like the service: the statistics of any number of batches add up field by field
(:func:`~focal_eval.evaluate.statistics.merge`), and their metrics come from the shipped
metrics graph (:func:`~focal_eval.evaluate.statistics.compute`).
"""
