"""Nox sessions: `tests` (default), `tests-oldest` (on torch 2.4), `bench` (the quick benchmark end
to end), `microbench` and `lint`."""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Install the suite with its dev extra and run pytest (posargs go to pytest)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(name="tests-oldest")
def tests_oldest(session: nox.Session) -> None:
    """The test suite on the oldest torch pyproject admits (2.4), to keep that lower bound honest.

    Not run by default: it installs a second torch (several GB).
    """
    session.install("torch==2.4.1", "torchvision==0.19.1")
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def microbench(session: nox.Session) -> None:
    """pytest-benchmark microbenchmarks (encoder layer per backend, the op) -> results/."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest", "tests/benchmarks", "--benchmark-only",
        "--benchmark-json", "results/benchmarks.json", *session.posargs,
    )  # fmt: skip


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """The quick benchmark, CPU only, from nothing to reports/ (about 40 minutes on 2 cores).

    FLOPs, FPS, peak memory of the paper and quick presets and the scaling sweep
    (bench.measure) -> the K ablation with the full-attention baseline on the synthetic set,
    which bench.ablate generates when it is missing -> reports/README.md and
    reports/index.html (bench.report).
    Finished cases and runs are skipped when it is run again. Extra arguments go to
    bench.measure (e.g. `nox -s bench -- --device cuda`).
    """
    session.install("-e", ".")
    if "cuda" not in session.posargs:
        session.env["VISBENCH_EXTENSION_CUDA"] = "0"  # CPU run: skip compiling the CUDA kernel
    results = "results"
    session.run("python", "-m", "bench.measure", "--out", results, *session.posargs)
    session.run("python", "-m", "bench.ablate", "--k", "16", "32", "--out", results)
    session.run(
        "python", "-m", "bench.report", "--results", results, "--out", "reports", "--force"
    )  # fmt: skip
    session.log(f"results: {results}/ (JSON lines); report: reports/index.html, reports/README.md")
