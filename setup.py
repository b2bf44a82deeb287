"""Build step of the fused evaluation kernel (service/kernel/*.cc).

Everything else about the distribution is in pyproject.toml. The kernel is an onnxruntime
custom-op library, built like an extension module (but never imported: the service hands its
path to onnxruntime) against onnxruntime's C API headers. The onnxruntime wheel ships none, so
the build takes them, checked by sha256, from the npm package that carries them, once per
machine (a cache under ``~/.cache/focal-eval``), or from ``FOCAL_ORT_INCLUDE`` (a folder that
already holds them). The extension is optional: without a compiler or the headers the
install still succeeds, and the service runs its portable graph (it logs why).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NPM_PACKAGE = "https://registry.npmjs.org/com.github.asus4.onnxruntime/-/com.github.asus4.onnxruntime-0.4.9.tgz"
HEADERS_FOLDER = "Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/"
HEADERS = {  # ORT_API_VERSION 29; the kernel asks onnxruntime for API 17 only
    "onnxruntime_c_api.h": "acc0cf4b3f28d39339c76770d76164bb7a0637dc89f5fde764b4017b632f6743",
    "onnxruntime_ep_c_api.h": "e6c986c9e98583f8113b2c6bc3864814883b806d501cf24da4d239c45753e235",
    "onnxruntime_error_code.h": "5ce3b054e798eced8d14f5b86e98692fd33470463f96194ce0700a2d53dd8721",
}


def _verified(folder: Path) -> bool:
    return all(
        (folder / name).is_file()
        and hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
        for name, digest in HEADERS.items()
    )


def onnxruntime_headers() -> Path:
    """A folder with the pinned C API headers: FOCAL_ORT_INCLUDE, the cache, or a download."""
    given = os.environ.get("FOCAL_ORT_INCLUDE")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = cache / "focal-eval" / "onnxruntime-headers-0.4.9"
    if _verified(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"package/{HEADERS_FOLDER}{name}": name for name in HEADERS}
    with (
        urllib.request.urlopen(NPM_PACKAGE, timeout=60) as response,
        tarfile.open(fileobj=response, mode="r|gz") as archive,  # streamed: stops early
    ):
        for member in archive:
            name = wanted.pop(member.name, None)
            if name is not None:
                data = archive.extractfile(member)
                assert data is not None
                (folder / name).write_bytes(data.read())
            if not wanted:
                break
    if not _verified(folder):
        raise RuntimeError(f"{NPM_PACKAGE}: the C API headers do not match their sha256")
    return folder


class BuildWithHeaders(build_ext):
    """``build_ext`` that first finds the onnxruntime headers for the kernel."""

    def build_extension(self, ext: Extension) -> None:
        """Compile ``ext`` with the headers' folder on its include path."""
        ext.include_dirs.append(str(onnxruntime_headers()))
        super().build_extension(ext)


kernel = Extension(
    "focal_eval.service.kernel._focal_kernel",
    sources=sorted(str(path) for path in Path("service/kernel").glob("*.cc")),
    depends=sorted(str(path) for path in Path("service/kernel").glob("*.h")),
    language="c++",
    # -fno-trapping-math: no floating-point exception is ever trapped, so that comparisons
    # and selects in the row loops vectorize (GCC keeps them scalar otherwise)
    extra_compile_args=[
        "-std=c++17",
        "-O3",
        "-fopenmp-simd",
        "-fno-trapping-math",
        "-fvisibility=hidden",
    ],
    optional=True,
)

setup(ext_modules=[kernel], cmdclass={"build_ext": BuildWithHeaders})
