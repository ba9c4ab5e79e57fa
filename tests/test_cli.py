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


def test_k_alone_keeps_each_specs_own_n_points():
    """bench.ablate --k with no value trains each spec as written, and a spec's explicit K names
    the same runs as --k does, so one call can summarise runs made by others."""
    from bench import ablate
    from bench.method import plan_settings
    from models.presets import get_preset

    def runs(*argv):
        args = ablate.build_parser().parse_args(list(argv))
        args.overrides = {}
        settings = plan_settings(get_preset(args.preset), args.backends, args.k, args.hybrids)
        return [(p.config.run, p.config.backend) for p in ablate.plan_runs(settings, args)]

    given = ["stdeform:mode=frames,n_points=16", "stdeform:mode=frame,n_points=8", "full"]
    own = runs("--backends", *given, "--seeds", "0", "--k")
    assert [name for name, _ in own] == [
        "stdeform-frames-k16-seed0", "stdeform-frame-k8-per-frame-2d-seed0", "full-sdpa-seed0"
    ]  # fmt: skip
    expanded = runs("--backends", "stdeform:mode=frames", "full", "--seeds", "0", "--k", "16")
    assert own[0] == expanded[0] and own[2] == expanded[1]
