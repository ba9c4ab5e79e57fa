"""Build and load the compiled STDeformAttn kernels (csrc/) on first use.

torch.utils.cpp_extension compiles the C++ (and, when torch has CUDA and a CUDA toolkit is
found, the CUDA) sources into a persistent cache (TORCH_EXTENSIONS_DIR, default
~/.cache/torch_extensions); ninja makes a second import reuse the build. The library registers
the kernels of ``torch.ops.visbench.stdeform_attn`` for CPU and CUDA.

Set VISBENCH_EXTENSION=0 to skip the build (the op then runs the pure-PyTorch reference),
VISBENCH_EXTENSION_CUDA=0 to build the CPU kernel only, VISBENCH_EXTENSION_VERBOSE=1 to see the compiler's output, TORCH_CUDA_ARCH_LIST to choose GPU
architectures (default: the visible GPU's, else "8.0;9.0").
"""

import contextlib
import dataclasses
import functools
import glob
import json
import logging
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import torch

DEFAULT_CUDA_ARCHS = "8.0;9.0"
CPU_SOURCES = ("stdeform_attn_op.cpp", "stdeform_attn_cpu.cpp")
CUDA_SOURCES = ("stdeform_attn_cuda.cu",)


@dataclasses.dataclass(frozen=True)
class ExtensionInfo:
    """What was built: which kernels exist, where the library is, and why anything is missing."""

    loaded: bool
    cpu_kernel: bool
    cuda_kernel: bool
    library: str | None = None
    cuda_home: str | None = None
    notes: tuple[str, ...] = ()


def csrc_dir() -> Path:
    """The kernel sources: attention/csrc in an installed wheel, else the repository's csrc/."""
    for candidate in (Path(__file__).parent / "csrc", Path(__file__).parent.parent / "csrc"):
        if (candidate / CPU_SOURCES[0]).is_file():
            return candidate
    raise FileNotFoundError(
        f"STDeformAttn sources not found next to {Path(__file__).parent} (looked for csrc/)"
    )


# Where toolkits are conventionally installed, after CUDA_HOME/CUDA_PATH and the nvcc on PATH.
CONVENTIONAL_TOOLKIT_ROOTS = ("/usr/local/cuda", "/usr/local/cuda-*", "/opt/cuda", "/usr/lib/cuda")


def _is_toolkit_root(path: Path) -> bool:
    has_nvcc = (path / "bin" / "nvcc").is_file()
    has_cudart = bool(
        glob.glob(str(path / "lib64" / "libcudart.so*"))
        or glob.glob(str(path / "targets" / "*" / "lib" / "libcudart.so*"))
    )
    return has_nvcc and has_cudart


@functools.cache
def toolkit_version(root: Path) -> str | None:
    """The toolkit's CUDA version ("13.0"): from its version.json, else its nvcc --version (run
    once per root and process)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        version = json.loads((root / "version.json").read_text())["cuda"]["version"]
        return ".".join(version.split(".")[:2])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        printed = subprocess.run(
            [str(root / "bin" / "nvcc"), "--version"], capture_output=True, text=True, timeout=60
        ).stdout
        match = re.search(r"release (\d+\.\d+)", printed)
        if match:
            return match.group(1)
    return None


def _major(version: str | None) -> str | None:
    return version.split(".")[0] if version else None


def find_cuda_toolkit(torch_cuda: str | None = torch.version.cuda) -> Path | None:
    """The real CUDA toolkit root: CUDA_HOME/CUDA_PATH, else the nvcc on PATH's, else the
    conventional locations.

    torch guesses the root from the nvcc on PATH, which fails when that nvcc is a wrapper script
    (the root then lacks lib64/libcudart and linking fails with "cannot find -lcudart"), so a
    root is accepted only when it holds both bin/nvcc and libcudart. A root set by CUDA_HOME or
    CUDA_PATH is taken as it is; among the others, the first whose major version equals
    ``torch_cuda``'s (torch's own CUDA) wins, else the first.
    """
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        chosen = os.environ.get(variable)
        if chosen and _is_toolkit_root(Path(chosen)):
            return Path(chosen).resolve()
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    for pattern in CONVENTIONAL_TOOLKIT_ROOTS:
        candidates += [Path(root) for root in sorted(glob.glob(pattern), reverse=True)]
    roots = list(dict.fromkeys(c.resolve() for c in candidates if _is_toolkit_root(c)))
    if not roots:
        return None
    matching = [root for root in roots if _major(toolkit_version(root)) == _major(torch_cuda)]
    return (matching or roots)[0]


def version_mismatch(cuda_home: Path, torch_cuda: str) -> str | None:
    """A note when the toolkit's CUDA major version is not torch's, else None."""
    found = toolkit_version(cuda_home)
    if _major(found) == _major(torch_cuda):
        return None
    return (
        f"the CUDA toolkit at {cuda_home} is CUDA {found or '(version unknown)'} but torch was "
        f"built with CUDA {torch_cuda}: the kernel links that toolkit's runtime beside torch's, "
        "which the driver must support (set CUDA_HOME to a matching toolkit)"
    )


def _cpu_flags() -> list[str]:
    """-O3 and OpenMP (at::parallel_for runs serially without it); AVX2/FMA when this CPU has them."""
    flags = ["-O3", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64"):
        with contextlib.suppress(OSError):
            cpuinfo = Path("/proc/cpuinfo").read_text()
            if " avx2" in cpuinfo and " fma" in cpuinfo:
                flags += ["-mavx2", "-mfma"]
    return flags


def _cpp_extension(cuda_home: Path | None):
    """Import torch.utils.cpp_extension with CUDA_HOME pointing at the real toolkit root."""
    if cuda_home is not None:
        os.environ["CUDA_HOME"] = str(cuda_home)
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its "No CUDA runtime is found" is expected on CPU machines
    try:
        import torch.utils.cpp_extension as cpp_extension
    finally:
        logger.setLevel(level)
    if cuda_home is not None:
        cpp_extension.CUDA_HOME = str(cuda_home)
    return cpp_extension


def build(cuda_home: Path | None, verbose: bool = False) -> str:
    """Compile (or reuse from the cache) the extension and load it; returns the library path.

    With ``cuda_home`` (a toolkit root from find_cuda_toolkit) the CUDA sources are built too.
    """
    sources = [str(csrc_dir() / name) for name in CPU_SOURCES]
    with_cuda = cuda_home is not None
    if with_cuda:
        sources += [str(csrc_dir() / name) for name in CUDA_SOURCES]
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    cpp_extension = _cpp_extension(cuda_home)
    cflags = _cpu_flags()
    name = "visbench_stdeform_" + ("cuda" if with_cuda else "cpu")
    if "-mavx2" in cflags:
        name += "_avx2"
    cuda_flags = ["-O3", "--use_fast_math", "-lineinfo"] if with_cuda else None
    loaded_before = set(torch.ops.loaded_libraries)
    library = cpp_extension.load(
        name=name,
        sources=sources,
        extra_cflags=cflags,
        extra_cuda_cflags=cuda_flags,
        extra_ldflags=["-fopenmp"],
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    if library is None:  # torch 2.4 returns None here: the library is the one it just loaded
        (library,) = set(torch.ops.loaded_libraries) - loaded_before
    return library


@functools.cache
def load_extension() -> ExtensionInfo:
    """Build and load the kernels once per process; never raises (reasons go in ``notes``)."""
    notes: list[str] = []
    if os.environ.get("VISBENCH_EXTENSION", "1") == "0":
        return ExtensionInfo(False, False, False, notes=("disabled by VISBENCH_EXTENSION=0",))
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return ExtensionInfo(
            False, False, False, notes=(f"no C++ compiler found ({compiler!r} is not on PATH)",)
        )
    verbose = os.environ.get("VISBENCH_EXTENSION_VERBOSE", "0") == "1"
    want_cuda = os.environ.get("VISBENCH_EXTENSION_CUDA", "1") != "0"
    cuda_home = find_cuda_toolkit() if torch.version.cuda and want_cuda else None
    if not want_cuda:
        notes.append("CUDA build disabled by VISBENCH_EXTENSION_CUDA=0: CPU kernel only")
    elif torch.version.cuda is None:
        notes.append("torch has no CUDA: CPU kernel only")
    elif cuda_home is None:
        notes.append("no CUDA toolkit found (set CUDA_HOME to its root): CPU kernel only")
    elif mismatch := version_mismatch(cuda_home, torch.version.cuda):
        notes.append(mismatch)
    if cuda_home is not None:
        try:
            library = build(cuda_home, verbose=verbose)
            return ExtensionInfo(True, True, True, library, str(cuda_home), tuple(notes))
        except Exception as error:  # a broken toolkit must not cost the CPU kernel
            notes.append(f"CUDA build failed, CPU kernel only: {_first_line(error)}")
    try:
        library = build(None, verbose=verbose)
    except Exception as error:
        notes.append(f"C++ build failed: {_first_line(error)}")
        return ExtensionInfo(False, False, False, notes=tuple(notes))
    return ExtensionInfo(True, True, False, library, None, tuple(notes))


def _first_line(error: Exception) -> str:
    """The gist of a build error: its first line and the compiler's first error lines."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    errors = [line for line in lines[1:] if "error" in line.lower()][:3]
    hint = " (VISBENCH_EXTENSION_VERBOSE=1 shows the compiler output)"
    return " | ".join([lines[0], *errors])[:1500] + hint
