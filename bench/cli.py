"""Command-line conventions shared by the suite's commands.

- ``parser(prog, doc)`` / ``ArgumentParser``: help that names the command as it is typed
  (``python -m bench.train``), keeps the docstring's example lines as written and ends every
  option's help with its default (or "(required)"); a parse error is one line,
  ``prog: error: message``, exit status 2 (no usage block).
- Option types that check values at parse time (``positive_int``, ``int_at_least``, ``fraction``,
  ``probability``, ``device``, ``existing_file``, ``output_file``): argparse names the option in
  the message.
- ``run(prog, main, argv)``: a user's mistake raised later (ValueError, a missing file, a
  read-only folder) becomes one line on stderr and exit status 2, never a traceback
  (VISBENCH_TRACEBACK=1 shows it, for debugging); ``report``/``fail`` print such a line from a
  command that handles its own errors.
- ``writable_dir``: an output folder is checked before the work starts, not after.

This module imports nothing heavy (no torch), so data tools and worker processes start quickly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Raw description and epilog; "(default: X)" or "(required)" after each option's help
    unless the help states its default itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default:" in text:
            return text
        if action.required:
            return f"{text} (required)"
        default = action.default
        if isinstance(default, (list, tuple)):
            shown = " ".join(map(str, default))
        elif default is False and action.nargs == 0:
            shown = "off"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line on stderr (no usage block), status 2."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def parser(prog: str, doc: str | None) -> ArgumentParser:
    return ArgumentParser(prog=prog, description=doc)


def report(parser: argparse.ArgumentParser, message: object) -> None:
    """Print `PROG: error: MESSAGE` as one line on stderr."""
    print(f"{parser.prog}: error: {_one_line(str(message))}", file=sys.stderr, flush=True)


def fail(parser: argparse.ArgumentParser, message: object) -> NoReturn:
    """report, then exit with status 1."""
    report(parser, message)
    parser.exit(1)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argument type: an int >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def _float_above(minimum: float, inclusive: bool) -> Callable[[str], float]:
    what = f"a number {'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value >= minimum if inclusive else value > minimum):  # also rejects nan
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_float = _float_above(0.0, inclusive=False)
nonnegative_float = _float_above(0.0, inclusive=True)


def fraction(text: str) -> float:
    """An argument type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def probability(text: str) -> float:
    """An argument type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a probability in [0, 1], got {text!r}"
        ) from None
    if not 0 <= value <= 1:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text}")
    return value


def device(text: str) -> str:
    """An argument type: "cpu", "cuda" or "cuda:<index>"."""
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:<index>, got {text!r}")
    return text


def existing_file(text: str) -> str:
    """An argument type: the path of an existing, readable file."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable")
    return text


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created under folder (or the folders to be made for it), or None.

    The nearest existing folder on the way must be a writable folder."""
    path = Path(folder).absolute()
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        return f"{path} is not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


def output_file(text: str) -> str:
    """An argument type: a path a file can be written to (checked before any work is done)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {path.parent} is not an existing folder")
    reason = unwritable(path.parent)
    if reason:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {reason}")
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
        print(f"{prog}: error: {_one_line(str(error)) or type(error).__name__}", file=sys.stderr)
        sys.exit(2)
