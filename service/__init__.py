"""service: the focal-eval scoring server (FastAPI + onnxruntime, no torch)."""
