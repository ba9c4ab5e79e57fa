"""Build and load the compiled STDeformAttn kernels (csrc/), once per machine and version.

torch.utils.cpp_extension compiles the C++ sources, and the CUDA sources when a GPU is visible
(or VISBENCH_EXTENSION_CUDA=1) and a CUDA toolkit is found, into the torch extensions cache
(TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions). The build folder is named by a hash of
the sources' contents, the flags, the compiler, the toolkit and the torch version
(``visbench_stdeform_cpu_avx2_<12 hex>``), so checkouts and versions that differ never rebuild
each other's library, and a library already built under that name is loaded without running the
build tools. A build prints one line to stderr while it runs. The library registers the kernels
of ``torch.ops.visbench.stdeform_attn`` for CPU and CUDA.

Environment: VISBENCH_EXTENSION=0 skips the build (the op then runs the pure-PyTorch
reference); VISBENCH_EXTENSION_CUDA=0 never builds the CUDA kernel, VISBENCH_EXTENSION_CUDA=1
builds it even without a GPU (to check that it compiles), unset builds it when
torch.cuda.is_available(); VISBENCH_EXTENSION_VERBOSE=1 shows the compiler's output;
TORCH_CUDA_ARCH_LIST chooses GPU architectures (default: the visible GPU's, else "8.0;9.0").
"""

import contextlib
import dataclasses
import functools
import glob
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch

DEFAULT_CUDA_ARCHS = "8.0;9.0"
CPU_SOURCES = ("stdeform_attn_op.cpp", "stdeform_attn_cpu.cpp")
CUDA_SOURCES = ("stdeform_attn_cuda.cu",)
SOURCE_SUFFIXES = (".h", ".cpp", ".cu", ".cuh")  # what csrc/ holds, headers included
CUDA_FLAGS = ("-O3", "--use_fast_math", "-lineinfo")
LDFLAGS = ("-fopenmp",)
LIBRARY_SUFFIX = ".pyd" if sys.platform == "win32" else ".so"  # as torch.utils.cpp_extension


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


def content_key(files, *parts: str) -> str:
    """12 hex digits of a SHA-256 over the files' names and contents and the given strings."""
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(f"{path.name}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    for part in parts:
        digest.update(f"{part}\0".encode())
    return digest.hexdigest()[:12]


def source_files(directory: Path | None = None) -> list[Path]:
    """Every source and header of the extension (a change to any of them is a new build)."""
    directory = directory or csrc_dir()
    return sorted(p for p in directory.iterdir() if p.suffix in SOURCE_SUFFIXES and p.is_file())


def _visible_archs() -> str:
    """The visible GPUs' architectures ("9.0"), which torch builds for when TORCH_CUDA_ARCH_LIST
    is unset."""
    if not torch.cuda.is_available():
        return ""
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(capabilities))


def build_name(cuda_home: Path | None, directory: Path | None = None) -> str:
    """The build's folder and library name: ``visbench_stdeform_<cpu|cuda>[_avx2]_<key>``, the
    key hashing the sources' contents, the flags, the compiler, torch's version and, with CUDA,
    the toolkit and the architectures: whatever changes the library changes the name."""
    cflags = _cpu_flags()
    parts = [
        "torch " + torch.__version__,
        "cxx " + os.environ.get("CXX", "c++"),
        "cflags " + " ".join(cflags),
        "ldflags " + " ".join(LDFLAGS),
    ]
    if cuda_home is not None:
        parts += [
            f"toolkit {cuda_home} {toolkit_version(cuda_home)}",
            "cuda flags " + " ".join(CUDA_FLAGS),
            "archs " + (os.environ.get("TORCH_CUDA_ARCH_LIST") or _visible_archs()),
        ]
    name = "visbench_stdeform_" + ("cuda" if cuda_home is not None else "cpu")
    if "-mavx2" in cflags:
        name += "_avx2"
    return f"{name}_{content_key(source_files(directory), *parts)}"


def extensions_root() -> Path:
    """TORCH_EXTENSIONS_DIR, else the torch extensions cache (~/.cache/torch_extensions)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch_extensions"


def _load_library(path: Path) -> None:
    torch.ops.load_library(str(path))


def build(cuda_home: Path | None, verbose: bool = False) -> str:
    """Load the library built under this build's name, compiling it first when it is missing;
    returns the library path.

    With ``cuda_home`` (a toolkit root from find_cuda_toolkit) the CUDA sources are built too.
    """
    with_cuda = cuda_home is not None
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    name = build_name(cuda_home)
    directory = extensions_root() / name
    library = directory / (name + LIBRARY_SUFFIX)
    # The name covers everything the library depends on, so a library under it is current. The
    # marker is written once a build has loaded: a library without it may be half written.
    built = directory / "visbench_built"
    if library.is_file() and built.is_file():
        _load_library(library)
        return str(library)
    print(
        "visbench: compiling the STDeformAttn extension "
        + (
            "with its CUDA kernel (first use, a few minutes)…"
            if with_cuda
            else "(first use, about a minute)…"
        ),
        file=sys.stderr,
        flush=True,
    )
    sources = [str(csrc_dir() / source) for source in CPU_SOURCES]
    if with_cuda:
        sources += [str(csrc_dir() / source) for source in CUDA_SOURCES]
    directory.mkdir(parents=True, exist_ok=True)
    cpp_extension = _cpp_extension(cuda_home)
    loaded_before = set(torch.ops.loaded_libraries)
    loaded = cpp_extension.load(
        name=name,
        sources=sources,
        extra_cflags=_cpu_flags(),
        extra_cuda_cflags=list(CUDA_FLAGS) if with_cuda else None,
        extra_ldflags=list(LDFLAGS),
        build_directory=str(directory),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    if loaded is None:  # torch 2.4 returns None here: the library is the one it just loaded
        (loaded,) = set(torch.ops.loaded_libraries) - loaded_before
    built.write_text(f"{loaded}\n")
    return loaded


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
    cuda_setting = os.environ.get("VISBENCH_EXTENSION_CUDA", "")
    # Unset: the CUDA kernel is built where it can run (a GPU is visible); "1" forces it.
    want_cuda = cuda_setting != "0" and (cuda_setting != "" or torch.cuda.is_available())
    cuda_home = find_cuda_toolkit() if torch.version.cuda and want_cuda else None
    if torch.version.cuda is None:
        notes.append("torch has no CUDA: CPU kernel only")
    elif cuda_setting == "0":
        notes.append("CUDA build disabled by VISBENCH_EXTENSION_CUDA=0: CPU kernel only")
    elif not want_cuda:
        notes.append(
            "no CUDA device visible: CPU kernel only (VISBENCH_EXTENSION_CUDA=1 builds the CUDA "
            "kernel anyway)"
        )
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
