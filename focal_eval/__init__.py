"""focal-eval: the library (focal), its exporter (export), the server (service) and datasets.

``evaluate`` merges and computes statistics and scores through a server. In a checkout the
four are links to the repository's top-level folders; installed, they are the distribution's
packages under this one name.
"""
