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
    """The quick benchmark, from nothing to reports/ (at most 60 minutes on 2 CPU cores).

    bench.measure: FLOPs, FPS, peak memory and training-step time of the ablation's methods at the
    paper and quick presets, and the scaling sweeps -> bench.ablate: full attention and
    stdeform (frames mode) at K = 16 and 32, three seeds each, on the synthetic set (generated
    when missing), from a backbone pretrained on a disjoint synthetic split -> bench.report:
    reports/README.md, index.html and summary.json (replacing the report there).
    Finished cases and runs are skipped when it is run again. Extra arguments go to
    bench.measure (e.g. `nox -s bench -- --device cuda`).
    """
    session.install("-e", ".")
    results = "results"
    session.run("python", "-m", "bench.measure", "--out", results, *session.posargs)
    session.run("python", "-m", "bench.ablate", "--k", "16", "32", "--out", results)
    session.run(
        "python", "-m", "bench.report", "--results", results, "--out", "reports", "--force"
    )  # fmt: skip
    session.log(f"results: {results}/ (JSON lines); report: reports/index.html, reports/README.md")


# The committed report's results: every mechanism, the hybrids, both stdeform axes, the
# learning-rate sweep and the convergence study (hours on 2 CPU cores; resumable).
STUDY_RESULTS = "reports/data"
HYBRIDS = ["full/stdeform:mode=frames,n_points=32", "stdeform:mode=frames,n_points=32/full"]
SWEPT = ["full", "stdeform:mode=frames,n_points=16", "divided", "window", "neighborhood"]
TRAINED = ["full", "stdeform:mode=frames", "stdeform:mode=3d", "stdeform:mode=frame", "divided",
           "window", "window:size=3x8x8", "neighborhood", "neighborhood:kernel=3x3x3"]  # fmt: skip
MEASURED = [
    *TRAINED,
    "full:impl=math",
]  # the ablation's methods, and dense attention's other kernel


@nox.session(name="committed-report")
def committed_report(session: nox.Session) -> None:
    """Everything behind the committed report, into reports/data, then the report itself.

    1. bench.study lr over every trained mechanism (its choice is the quick preset's
       lr_by_backend); 2. bench.measure of every method and hybrid; 3. bench.ablate of every
       mechanism (stdeform's three modes at K = 16 and 32, window and neighbourhood at two sizes)
       and the hybrids, three seeds each, with one common target; 4. bench.study convergence;
       5. bench.report.
    """
    session.install("-e", ".")
    out = ["--out", STUDY_RESULTS]
    session.run("python", "-m", "bench.study", "lr", "--backends", *SWEPT, *out)
    session.run("python", "-m", "bench.measure", "--backends", *MEASURED, "--k", "16", "32",
                "--hybrids", *HYBRIDS, *out)  # fmt: skip
    session.run("python", "-m", "bench.ablate", "--backends", *TRAINED, "--k", "16", "32",
                "--hybrids", *HYBRIDS, *out)  # fmt: skip
    session.run("python", "-m", "bench.study", "convergence", *out)
    session.run("python", "-m", "bench.report", "--results", STUDY_RESULTS, "--out", "reports",
                "--force")  # fmt: skip
