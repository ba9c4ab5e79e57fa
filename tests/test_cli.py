"""Every command's --help names it as typed, keeps its examples readable and documents every
option with its default; bench.cli's option types reject bad values with the option's name."""

import argparse
import importlib
import re

import pytest

from bench import cli

COMMANDS = {
    "bench.train": "bench.train",
    "bench.ablate": "bench.ablate",
    "bench.study": "bench.study",
    "bench.measure": "bench.measure.__main__",
    "bench.report": "bench.report.__main__",
    "bench.infer": "bench.infer",
    "bench.pretrain": "bench.pretrain",
    "bench.data.synthetic": "bench.data.synthetic",
    "bench.evaluation": "bench.evaluation.__main__",
}


def parsers():
    for command, module in COMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        yield command, parser
        for action in parser._actions:  # subcommands (bench.study lr, convergence)
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{command} {name}", sub


@pytest.mark.parametrize("command, parser", list(parsers()), ids=lambda x: str(x)[:30])
def test_help_names_the_command_and_documents_every_option(command, parser):
    text = parser.format_help()
    assert text.startswith(f"usage: python -m {command}"), text[:200]
    assert "__main__" not in text and ".py" not in text.split("\n")[0]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help"
        described = parser.formatter_class("x")._get_help_string(action)
        assert "default" in described or "required" in described, (command, described)


def test_the_examples_keep_their_lines():
    text = importlib.import_module("bench.train").build_parser().format_help()
    assert re.search(
        r"\n    python -m bench\.train --name k16 --backend stdeform:mode=frames", text
    )


@pytest.mark.parametrize(
    "kind, text",
    [(cli.positive_int, "0"), (cli.positive_int, "x"), (cli.nonnegative_int, "-1"),
     (cli.positive_float, "0"), (cli.positive_float, "nan"), (cli.fraction, "1.5"),
     (cli.probability, "2"), (cli.device, "tpu"), (cli.device, "cpu:1")],
)  # fmt: skip
def test_option_types_reject_bad_values(kind, text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
        kind(text)


def test_a_read_only_folder_is_found_before_the_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="not writable"):
        cli.writable_dir(blocker / "out")
