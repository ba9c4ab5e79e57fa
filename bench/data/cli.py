"""Command-line pieces shared by `python -m bench.data.synthetic` and `python -m bench.evaluation`.

- `HelpFormatter` keeps description and epilog lines as written (examples stay copyable) and ends
  every option's help with its default, "(required)", or the default the help text states itself.
- `ArgumentParser.error` prints one line, `PROG: error: MESSAGE`, and exits with status 2
  (argparse prints the usage block first); `report` prints the same line for errors found after
  parsing (a file that does not fit its format, a folder that cannot be written) and `fail` also
  exits with status 1.
- Argument types (`int_at_least`, `probability`, `existing_file`, `output_file`) reject a value at
  parse time with a message that argparse prefixes with the option's name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Raw description and epilog; "(default: X)" or "(required)" after each option's help."""

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
                f"expected an int >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {value}")
        return value

    return parse


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
