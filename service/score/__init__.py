"""The ``/score`` protocol: routes, the JSON / npz codec, and the OpenAPI schemas."""
