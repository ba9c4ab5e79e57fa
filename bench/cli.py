"""Command-line conventions shared by the suite's commands.

- ``parser(prog, doc)``: help that names the command as it is typed (``python -m bench.train``),
  keeps the docstring's example lines as written and shows every option's default.
- Option types that check values at parse time (``positive_int``, ``fraction``, ...): argparse
  prints ``prog: error: argument --x: expected ..., got ...`` and exits 2.
- ``run(prog, main, argv)``: a user's mistake raised later (ValueError, a missing file, a
  read-only folder) becomes one line on stderr and exit status 2, never a traceback
  (VISBENCH_TRACEBACK=1 shows it, for debugging).
- ``writable_dir``: an output folder is checked before the work starts, not after.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and "(default: ...)" after every option's help that does not
    already say its default."""

    def _get_help_string(self, action):
        if action.help and "default" in action.help:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors as one line (``prog: error: ...``, exit status 2); --help has the
    usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    return ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter)


def _number(kind, minimum, inclusive: bool, what: str):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    convert.__name__ = what  # argparse names the type in some messages
    return convert


positive_int = _number(int, 1, True, "an integer >= 1")
nonnegative_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a number > 0")
nonnegative_float = _number(float, 0.0, True, "a number >= 0")


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def device(text: str) -> str:
    """ "cpu", "cuda" or "cuda:<index>"."""
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:<index>, got {text!r}")
    return text


def writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` if needed and prove it writable now; PermissionError naming it if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise PermissionError(f"{what} {path} is not writable ({error.strerror})") from None
    return path


def run(prog: str, main, argv=None):
    """``main(argv)``, with a user's mistake reported as one line and exit status 2."""
    try:
        return main(argv)
    except USER_ERRORS as error:
        if os.environ.get("VISBENCH_TRACEBACK") == "1":
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
