"""Locating the CUDA toolkit: CUDA_HOME first, a wrapper nvcc on PATH is seen through, and among
several toolkits the one matching torch's CUDA major version is chosen (fake toolkits, no GPU)."""

import json
import os
import stat

import pytest

from attention import extension
from attention.extension import find_cuda_toolkit, toolkit_version, version_mismatch


def make_toolkit(root, version, cudart=True, version_json=False):
    """A fake toolkit: bin/nvcc printing ``version`` as the real one does, lib64/libcudart."""
    (root / "bin").mkdir(parents=True)
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(
        "#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
        f"echo 'Cuda compilation tools, release {version}, V{version}.1'\n"
    )
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    if cudart:
        (root / "lib64").mkdir()
        (root / "lib64" / f"libcudart.so.{version.split('.')[0]}").write_text("")
    if version_json:
        (root / "version.json").write_text(json.dumps({"cuda": {"version": f"{version}.2"}}))
    return root.resolve()


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """No CUDA_HOME/CUDA_PATH, PATH with only a wrapper nvcc, conventional roots under tmp_path."""
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(variable, raising=False)
    wrapper = tmp_path / "wrapper" / "bin"
    wrapper.mkdir(parents=True)
    (wrapper / "nvcc").write_text('#!/bin/sh\nexec nvcc-elsewhere "$@"\n')
    (wrapper / "nvcc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setattr(extension, "CONVENTIONAL_TOOLKIT_ROOTS", (str(tmp_path / "cuda-*"),))
    return tmp_path


def test_wrapper_nvcc_is_seen_through(machine):
    real = make_toolkit(machine / "cuda-13.0", "13.0")
    assert find_cuda_toolkit("13.0") == real  # not wrapper/, which has nvcc but no libcudart


def test_nothing_found(machine):
    make_toolkit(machine / "cuda-13.0", "13.0", cudart=False)  # nvcc alone is not a toolkit
    assert find_cuda_toolkit("13.0") is None


def test_cuda_home_wins_even_when_its_version_differs(machine, monkeypatch):
    make_toolkit(machine / "cuda-13.0", "13.0")
    chosen = make_toolkit(machine / "elsewhere", "12.4")
    monkeypatch.setenv("CUDA_HOME", str(chosen))
    assert find_cuda_toolkit("13.0") == chosen
    assert "CUDA 12.4 but torch was built with CUDA 13.0" in version_mismatch(chosen, "13.0")


@pytest.mark.parametrize(
    ("torch_cuda", "expected"),
    [("12.1", "cuda-12.4"), ("13.0", "cuda-13.0"), ("11.8", "cuda-13.0")],
)
def test_the_toolkit_matching_torch_is_preferred(machine, torch_cuda, expected):
    make_toolkit(machine / "cuda-12.4", "12.4")
    make_toolkit(machine / "cuda-13.0", "13.0")
    assert find_cuda_toolkit(torch_cuda) == (machine / expected).resolve()


def test_version_from_version_json_or_nvcc(tmp_path):
    with_json = make_toolkit(tmp_path / "a", "12.8", version_json=True)
    (with_json / "bin" / "nvcc").write_text("#!/bin/sh\nexit 1\n")  # version.json is read first
    assert toolkit_version(with_json) == "12.8"
    assert toolkit_version(make_toolkit(tmp_path / "b", "13.0")) == "13.0"
    assert version_mismatch(tmp_path / "b", "13.2") is None
    assert toolkit_version(tmp_path / "missing") is None
    assert "(version unknown)" in version_mismatch(tmp_path / "missing", "13.0")
