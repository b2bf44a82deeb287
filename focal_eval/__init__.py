"""focal-eval: the library (focal), its exporter (export) and the server (service).

In a checkout the three are links to the repository's top-level folders; installed, they are
the distribution's packages under this one name.
"""
