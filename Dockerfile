# focal-eval as a scoring service / model-monitoring sidecar: no torch, the default graph
# baked in, non-root, healthy once the graph has scored its warm-up batch.

# --- build: install the service package and trim what it never loads --------------------
FROM python:3.11-slim AS build
# names this stage's image, so that tests/container can remove the ones a new build supersedes
LABEL org.focal-eval.stage="build"
# a C++ compiler for the fused kernel (setup.py), here only: the runtime stage has none
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null \
    && rm -rf /var/lib/apt/lists/*
# the sources .dockerignore lets in, in one step (each step copies the whole file system where
# the storage shares no layers, as podman's vfs here). The distribution installs
# focal_eval.{focal,export,service,evaluate,report}; the image never imports focal and export
# (they need torch, which it must not carry) nor report (matplotlib), but their sources are
# part of it. The build also copies Chart.js from npm for /dashboard.
COPY . /src
# Trimmed: test suites; onnxruntime's optional tooling (transformers, quantization, tools)
# and its C-API library libonnxruntime.so, which the Python module does not link. (No `strip`:
# it breaks the auditwheel-patched libraries in numpy.libs.) The container tests score through
# the result.
RUN pip install --no-cache-dir --disable-pip-version-check --target /install /src \
    && cd /install \
    && find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
    && rm -rf numpy/f2py numpy/distutils onnxruntime/transformers onnxruntime/quantization \
              onnxruntime/tools onnxruntime/capi/libonnxruntime.so*

# --- runtime ------------------------------------------------------------------------------
# the configuration first and the installed tree last: each step before the COPY copies only
# the base image's file system
FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin focal \
    && mkdir /artifacts && chown focal:focal /artifacts
# settings are FOCAL_* variables; mount a custom export at /artifacts and set
# FOCAL_ARTIFACT_DIR=/artifacts to serve it instead of the shipped graph
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/focal-eval \
    PATH=/opt/focal-eval/bin:$PATH \
    FOCAL_HOST=0.0.0.0 \
    FOCAL_PORT=8000
EXPOSE 8000
# slim images have no curl: ask /healthz with the standard library
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FOCAL_PORT', '8000') + '/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "focal_eval.service", "serve"]
USER 10001:10001
# owned by root, read-only to the service's user
COPY --from=build /install /opt/focal-eval
