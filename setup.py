"""pip build of bridgedfast._C with torch.utils.cpp_extension.

CPU kernels are always built. CUDA kernels are built when a CUDA build of torch and nvcc are
both present (no GPU needed), or when FORCE_CUDA=1; BRIDGEDFAST_NO_CUDA=1 builds CPU only.
The JPEG decoding op (libjpeg-turbo >= 1.5: cropped and scaled decoding) is built when its
headers and library are found (Debian/Ubuntu: `apt install libjpeg62-turbo-dev` or
`libjpeg-turbo8-dev`; conda: `libjpeg-turbo`; another prefix: BRIDGEDFAST_JPEG_ROOT=PREFIX);
BRIDGEDFAST_NO_JPEG=1 leaves it out. Without it the loader decodes with torchvision.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def _log(msg: str) -> None:
    print(f"[bridgedfast build] {msg}", flush=True)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_cuda_root(path: Path) -> bool:
    return (path / "bin" / "nvcc").exists() and (path / "include" / "cuda_runtime.h").exists()


def _nvcc_reported_root(nvcc: str) -> Path | None:
    # nvcc may be a wrapper script (e.g. /usr/local/bin/nvcc -> exec .../cuda-13.0/bin/nvcc);
    # its dry run names the real toolkit as TOP.
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "probe.cu"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        line = line.strip().lstrip("#$ ").strip()
        if line.startswith("TOP="):
            return Path(line[4:]).resolve()
    return None


def find_cuda_home() -> Path | None:
    """The folder holding bin/nvcc, include/ and lib64/, or None."""
    candidates: list[Path] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]))
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
        reported = _nvcc_reported_root(nvcc)
        if reported is not None:
            candidates.append(reported)
    candidates.append(Path("/usr/local/cuda"))
    candidates.extend(sorted(Path("/usr/local").glob("cuda-*"), reverse=True))
    for path in candidates:
        if _is_cuda_root(path):
            return path.resolve()
    return None


def nvidia_wheel_include_dirs() -> list[str]:
    """CUDA library headers (cublas_v2.h, cusparse.h, ...) shipped inside torch's nvidia wheels."""
    dirs: list[str] = []
    for entry in sys.path:
        base = Path(entry) / "nvidia"
        if base.is_dir():
            dirs += sorted(str(p) for p in base.glob("*/include") if p.is_dir())
    return dirs


_JPEG_PROBE = r"""
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>
int main(void) {
  struct jpeg_decompress_struct c; struct jpeg_error_mgr e; JDIMENSION x = 0, w = 1;
  c.err = jpeg_std_error(&e); jpeg_create_decompress(&c);
  if (0) { jpeg_crop_scanline(&c, &x, &w); jpeg_skip_scanlines(&c, 1); }
  jpeg_destroy_decompress(&c); return 0;
}
"""


def find_libjpeg() -> tuple[list[str], list[str], str]:
    """(include dirs, library dirs, why) for libjpeg-turbo with cropped decoding, or ([], [], why not)
    when none is found; a small C program that calls jpeg_crop_scanline must compile and link."""
    if _flag("BRIDGEDFAST_NO_JPEG"):
        return [], [], "BRIDGEDFAST_NO_JPEG=1"
    roots = [Path(os.environ["BRIDGEDFAST_JPEG_ROOT"])] if os.environ.get("BRIDGEDFAST_JPEG_ROOT") else []
    if os.environ.get("CONDA_PREFIX"):
        roots.append(Path(os.environ["CONDA_PREFIX"]))
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return [], [], "no C compiler to probe for libjpeg-turbo"
    import tempfile

    for root in roots + [None]:
        inc = [str(root / "include")] if root is not None else []
        lib = [str(root / "lib")] if root is not None else []
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "probe.c"
            src.write_text(_JPEG_PROBE)
            cmd = [compiler, str(src), "-o", str(Path(tmp) / "probe")] + [f"-I{d}" for d in inc] + \
                [f"-L{d}" for d in lib] + ["-ljpeg"]
            try:
                ok = subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
        if ok:
            return inc, lib, f"libjpeg-turbo found{'' if root is None else ' in ' + str(root)}"
    return [], [], ("libjpeg-turbo (jpeglib.h with jpeg_crop_scanline) not found: install libjpeg62-turbo-dev "
                    "or set BRIDGEDFAST_JPEG_ROOT")


def default_max_jobs() -> int:
    """Parallel compile jobs: at most the cores, and about one per 2.5 GiB of free memory."""
    cores = os.cpu_count() or 1
    avail_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail_gib = int(line.split()[1]) / (1024 * 1024)
                    break
    except OSError:
        pass
    by_memory = cores if avail_gib is None else max(1, int(avail_gib / 2.5))
    return max(1, min(cores, by_memory))


def decide_cuda(torch_cuda_version: str | None) -> tuple[bool, str]:
    if _flag("BRIDGEDFAST_NO_CUDA"):
        return False, "BRIDGEDFAST_NO_CUDA=1"
    if _flag("FORCE_CUDA"):
        return True, "FORCE_CUDA=1"
    if torch_cuda_version is None:
        return False, "torch is a CPU-only build"
    if os.environ.get("CUDA_HOME") is None:
        return False, "no CUDA toolkit (nvcc) found"
    return True, f"torch built with CUDA {torch_cuda_version} and nvcc found"


def build_extensions():
    cuda_home = find_cuda_home()
    if cuda_home is not None:
        # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME once.
        os.environ["CUDA_HOME"] = str(cuda_home)
    os.environ.setdefault("MAX_JOBS", str(default_max_jobs()))

    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    with_cuda, why = decide_cuda(torch.version.cuda)
    if with_cuda and cuda_home is None:
        raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to the folder with bin/nvcc")

    sources = sorted(glob.glob(str(CSRC / "cpu" / "*.cpp")))
    sources += sorted(glob.glob(str(CSRC / "torch" / "*.cpp")))
    sources = [s for s in sources if not s.endswith("_cuda.cpp")]
    # No -std here: torch.utils.cpp_extension picks the standard its headers need (C++17 or 20).
    cxx = ["-O3", "-fopenmp", "-Wall", "-Wno-unused-function"]
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    extension = CppExtension
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        sources += sorted(glob.glob(str(CSRC / "cuda" / "*.cu")))
        sources += sorted(glob.glob(str(CSRC / "torch" / "*_cuda.cpp")))
        cxx.append("-DBRIDGEDFAST_WITH_CUDA")
        for inc in nvidia_wheel_include_dirs():
            cxx += ["-idirafter", inc]
        extension = CUDAExtension

    jpeg_inc, jpeg_lib, jpeg_why = find_libjpeg()
    with_jpeg = jpeg_why.startswith("libjpeg-turbo found")
    libraries = []
    if with_jpeg:
        cxx.append("-DBRIDGEDFAST_WITH_JPEG")
        libraries.append("jpeg")

    rel = [os.path.relpath(s, ROOT) for s in sources]
    _log(f"CUDA kernels: {'yes' if with_cuda else 'no'} ({why})")
    _log(f"JPEG decoding op: {'yes' if with_jpeg else 'no'} ({jpeg_why})")
    if with_cuda:
        _log(f"CUDA_HOME={cuda_home}  TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    _log(f"torch {torch.__version__}, MAX_JOBS={os.environ['MAX_JOBS']}, {len(rel)} sources:")
    for s in rel:
        _log(f"  {s}")

    ext = extension(
        name="bridgedfast._C",
        sources=rel,
        include_dirs=[str(CSRC / "include"), str(CSRC)] + jpeg_inc,
        library_dirs=jpeg_lib,
        runtime_library_dirs=jpeg_lib,
        libraries=libraries,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc} if with_cuda else {"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = build_extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
