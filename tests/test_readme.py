"""The README's code blocks work as written.

- Every ```python block runs, in a fresh process from the repository root.
- A ```bash block preceded by ``<!-- test: run -->`` runs command by command, as written, in an
  empty folder (the data-to-results tour).
- Every other command is checked without running it (they take minutes to hours): a ``nox -s``
  session exists in noxfile.py; a ``python -m bench.<command>`` (or ``torchrun -m``) line parses
  with that command's own parser, and its attention specs, preset and data options are checked
  the way the command checks them before any work.
"""

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(<!-- test: run -->\n)?```(python|bash)\n(.*?)```", re.S)
COMMANDS = {  # python -m <module> -> the module holding build_parser
    "bench.measure": "bench.measure.__main__",
    "bench.report": "bench.report.__main__",
    "bench.evaluation": "bench.evaluation.__main__",
}


def blocks(language: str, run: bool | None = None) -> list[str]:
    found = []
    for marker, lang, body in BLOCK.findall(README):
        if lang == language and (run is None or bool(marker) == run):
            found.append(body)
    return found


def commands(body: str) -> list[str]:
    """One string per command: continuation lines joined, comments and blank lines dropped."""
    joined = body.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        line = line.split("  #")[0].split("# ")[0] if "#" in line else line
        if line.strip():
            lines.extend(part.strip() for part in line.split("&&"))
    return lines


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run(index):
    result = subprocess.run([sys.executable, "-c", blocks("python")[index]], cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks("bash", run=True))))
def test_the_tour_runs_as_written(index, tmp_path):
    for command in commands(blocks("bash", run=True)[index]):
        argv = shlex.split(command)
        assert argv[:2] == ["python", "-m"], command
        result = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env(),
                                capture_output=True, text=True, timeout=900)  # fmt: skip
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"


def check_command(argv: list[str]) -> None:
    """Parse a bench command's arguments and run its checks that come before any work."""
    from bench.method import plan_settings
    from models import get_preset

    module = argv[0]
    parser = importlib.import_module(COMMANDS.get(module, module)).build_parser()
    args = parser.parse_args(argv[1:])
    if module == "bench.train":
        from bench.train import config_from_args

        config_from_args(args)
    if module in ("bench.ablate", "bench.measure", "bench.study"):
        from bench.train import parse_overrides

        presets = args.preset if isinstance(args.preset, list) else [args.preset]
        for preset in presets:
            overrides = parse_overrides(getattr(args, "set", []))
            plan_settings(get_preset(preset, **overrides), args.backends, args.k, args.hybrids)


def other_commands() -> list[str]:
    return [c for body in blocks("bash", run=False) for c in commands(body)]


@pytest.mark.parametrize("command", other_commands())
def test_every_other_command_parses(command):
    argv = shlex.split(command)
    if argv[:2] == ["python", "-m"] and argv[2] == "pip":
        return  # installing nox
    if argv[0] == "nox":
        sessions = re.findall(r'@nox\.session(?:\(name="([\w-]+)"\))?\s*\ndef (\w+)',
                              (ROOT / "noxfile.py").read_text())  # fmt: skip
        assert argv[2] in {name or function for name, function in sessions}, command
        return
    if argv[0] == "torchrun":
        argv = ["python", "-m", *argv[argv.index("-m") + 1 :]]
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("bench."), command
    check_command(argv[2:])


def test_the_readme_has_blocks_of_every_kind():
    assert blocks("python") and blocks("bash", run=True) and other_commands()
