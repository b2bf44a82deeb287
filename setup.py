"""Build steps that need files from the npm registry: the fused kernel and the dashboard's charts.

Everything else about the distribution is in pyproject.toml.

- The kernel (service/kernel/*.cc) is an onnxruntime custom-op library, built like an
  extension module (but never imported: the service hands its path to onnxruntime) against
  onnxruntime's C API headers. The onnxruntime wheel ships none, so the build takes them from
  the npm package that carries them, or from ``FOCAL_ORT_INCLUDE`` (a folder that already
  holds them). The extension is optional: without a compiler or the headers the install still
  succeeds, and the service runs its portable graph (it logs why).
- ``GET /dashboard`` draws with Chart.js, whose bundle the build copies from its npm package
  into ``service/dashboard/assets`` (package data). Without it the install still succeeds and
  the page shows its tables without charts (it says why).

Each file is checked by sha256 and fetched once per machine (a cache under
``~/.cache/focal-eval``).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.errors import CompileError

logger = logging.getLogger("focal-eval.setup")
# what a failed or garbled download raises: no network, an HTML page from a proxy, a cut
FETCH_ERRORS = (
    OSError,
    RuntimeError,
    tarfile.TarError,
    EOFError,
    http.client.HTTPException,
    zlib.error,
)


@dataclass(frozen=True)
class NpmFiles:
    """Files taken from one npm package's tarball, each pinned by sha256."""

    tarball: str
    cache_name: str
    files: dict[str, str]  # path inside the package -> sha256; cached under its base name

    def verified(self, folder: Path) -> bool:
        """Whether ``folder`` holds every file with its pinned digest."""
        return all(
            (folder / Path(path).name).is_file()
            and hashlib.sha256((folder / Path(path).name).read_bytes()).hexdigest() == digest
            for path, digest in self.files.items()
        )

    def fetched(self) -> Path:
        """A folder with the files: the cache, or a download (streamed: it stops early)."""
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        folder = cache / "focal-eval" / self.cache_name
        if self.verified(folder):
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {f"package/{path}": Path(path).name for path in self.files}
        with (
            urllib.request.urlopen(self.tarball, timeout=60) as response,
            tarfile.open(fileobj=response, mode="r|gz") as archive,
        ):
            for member in archive:
                name = wanted.pop(member.name, None)
                if name is not None:
                    data = archive.extractfile(member)
                    assert data is not None
                    (folder / name).write_bytes(data.read())
                if not wanted:
                    break
        if not self.verified(folder):
            raise RuntimeError(f"{self.tarball}: the files do not match their sha256")
        return folder


HEADERS_FOLDER = "Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/"
HEADERS = {
    "onnxruntime_c_api.h": "acc0cf4b3f28d39339c76770d76164bb7a0637dc89f5fde764b4017b632f6743",
    "onnxruntime_ep_c_api.h": "e6c986c9e98583f8113b2c6bc3864814883b806d501cf24da4d239c45753e235",
    "onnxruntime_error_code.h": "5ce3b054e798eced8d14f5b86e98692fd33470463f96194ce0700a2d53dd8721",
}
ONNXRUNTIME_HEADERS = NpmFiles(  # ORT_API_VERSION 29; the kernel asks onnxruntime for API 17
    "https://registry.npmjs.org/com.github.asus4.onnxruntime/-/com.github.asus4.onnxruntime-0.4.9.tgz",
    "onnxruntime-headers-0.4.9",
    {HEADERS_FOLDER + name: digest for name, digest in HEADERS.items()},
)
CHART_JS = NpmFiles(  # MIT; its licence travels with the bundle
    "https://registry.npmjs.org/chart.js/-/chart.js-4.6.1.tgz",
    "chart.js-4.6.1",
    {
        "dist/chart.umd.min.js": "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2",
        "LICENSE.md": "41a84aa2caba645f966a18d9c2056b73e6d3a81d80bc0046bc0011a2634d4cce",
    },
)
DASHBOARD_ASSETS = Path("service/dashboard/assets")
CHART_JS_ASSETS = {"chart.umd.min.js": "chart.umd.min.js", "LICENSE.md": "chart.js.LICENSE.md"}


def onnxruntime_headers() -> Path:
    """A folder with the pinned C API headers: FOCAL_ORT_INCLUDE, the cache, or a download."""
    given = os.environ.get("FOCAL_ORT_INCLUDE")
    return Path(given) if given else ONNXRUNTIME_HEADERS.fetched()


def copy_chart_js() -> None:
    """Chart.js and its licence into the dashboard's assets; a warning if it cannot be had."""
    try:
        folder = CHART_JS.fetched()
    except FETCH_ERRORS as error:
        logger.warning("the dashboard will show no charts: Chart.js not fetched (%s)", error)
        return
    for cached, asset in CHART_JS_ASSETS.items():
        shutil.copyfile(folder / cached, DASHBOARD_ASSETS / asset)


class BuildWithHeaders(build_ext):
    """``build_ext`` that first finds the onnxruntime headers for the kernel."""

    def build_extension(self, ext: Extension) -> None:
        """Compile ``ext`` with the headers' folder on its include path.

        Headers that cannot be had fail the (optional) extension as a compiler would, so that
        the install goes on without it.
        """
        try:
            headers = onnxruntime_headers()
        except FETCH_ERRORS as error:
            raise CompileError(f"onnxruntime's C API headers not fetched ({error})") from error
        ext.include_dirs.append(str(headers))
        super().build_extension(ext)


class BuildWithChartJs(build_py):
    """``build_py`` that first copies Chart.js into the dashboard's package data."""

    def run(self) -> None:
        """Copy the bundle, then build the Python packages."""
        copy_chart_js()
        super().run()


kernel = Extension(
    "focal_eval.service.kernel._focal_kernel",
    sources=sorted(str(path) for path in Path("service/kernel").glob("*.cc")),
    depends=sorted(str(path) for path in Path("service/kernel").glob("*.h")),
    language="c++",
    # -fno-trapping-math: no floating-point exception is ever trapped, so that comparisons
    # and selects in the row loops vectorize (GCC keeps them scalar otherwise); -Wno-psabi:
    # the 32-byte vector values (op.h) only pass between inlined functions, never across an ABI
    extra_compile_args=[
        "-std=c++17",
        "-O3",
        "-fopenmp-simd",
        "-fno-trapping-math",
        "-fvisibility=hidden",
        "-Wno-psabi",
    ],
    optional=True,
)

setup(
    ext_modules=[kernel],
    cmdclass={"build_ext": BuildWithHeaders, "build_py": BuildWithChartJs},
)
