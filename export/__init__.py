"""export: writes focal/'s evaluation graphs as ONNX, TorchScript and torch.export artifacts.

Each artifact gets a JSON manifest beside it (``<file>.manifest.json``) and is checked
against eager PyTorch on a built-in sweep before the export reports success. Run it as
``focal export --out DIR`` or ``python -m focal_eval.export --out DIR``.
"""

from __future__ import annotations

from focal_eval.export.pipeline import ArtifactReport, export_all

__all__ = ["ArtifactReport", "export_all"]
