"""The Open Inference Protocol (KServe v2).

``dataplane`` is transport-neutral (decoded requests in, outputs out); ``rest`` is a thin layer
of HTTP routes over it, as a gRPC servicer or a new task would be; ``decode`` / ``encode`` are
the REST wire format with Triton's binary extension; ``datatypes`` its types.
"""
