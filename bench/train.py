"""Train one run: periodic evaluation, checkpoint/resume, DistributedDataParallel.

    python -m bench.train --name k16 --backend stdeform:mode=frames,n_points=16 \\
        --iterations 1200 --eval-every 150 --out results/runs
    python -m bench.train --name hybrid --encoder full --decoder stdeform
    torchrun --nproc_per_node 2 -m bench.train ...        # DDP: gloo on CPU, nccl on GPU

A run is defined by iterations: the learning-rate drop (after ``lr_drop`` x iterations), the
evaluations (every ``eval_every`` iterations and at the end) and the end are functions of the
iteration count alone (bench.engine), so one (settings, seed) gives the same parameters whatever
the machine's load. ``budget_minutes`` is only a safety cap: a run it stops ends with status
"budget" and is marked as cut short wherever it is reported.

At every evaluation one JSON line goes to ``<out>/<run>/log.jsonl``:

    {"run", "iteration", "epoch", "wall_s", "device_hours", "device_name", "n_devices",
     "eval_s", "losses": {name: mean since the last evaluation}, "metrics": {AP, AP50, ...}, "lr"}

wall_s includes evaluation; device_hours = wall_s x processes; eval_s is that evaluation's
time; an epoch is one clip per training video. ``final.json`` holds the status, last metrics,
peak memory and the environment the run was trained in. Files, resume and the refusal to mix
runs: bench.runfiles.
"""

import dataclasses
import hashlib
import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from attention.registry import BACKENDS
from bench import cli
from bench.data.dataset import YTVISClipDataset
from bench.data.source import resolve_data
from bench.data.transforms import build_transforms
from bench.engine import (
    broadcast,
    build_optimizer,
    evaluate_model,
    load_batch,
    lr_factor,
    seed_iteration,
    set_lr,
    train_step,
)
from bench.environment import device_name, environment
from bench.runfiles import RunFiles
from models import PRESETS, attention_specs, build_model, get_preset

# settings that do not change what a run computes: they may differ when it is resumed
NOT_IDENTIFYING = ("out", "threads", "budget_minutes")


@dataclasses.dataclass
class TrainConfig:
    """One training run: model, data, schedule and where its files go."""

    run: str
    out: str = "results/runs"  # the run's files go to <out>/<run>/
    preset: str = "quick"
    backend: str = "stdeform"  # attention spec of both sides (attention.registry)
    encoder: str | None = None  # the encoder's spec, when it differs (hybrids)
    decoder: str | None = None  # the decoder's spec, when it differs
    overrides: dict = dataclasses.field(default_factory=dict)  # models.presets.Preset fields
    # "synthetic", "synthetic:FIELD=VALUE,..." or a YouTube-VIS directory (see data_paths)
    data: str = "synthetic"
    iterations: int = 1000
    eval_every: int = 250
    lr_drop: float = 2 / 3  # the learning rate drops x0.1 after this fraction of the iterations
    budget_minutes: float | None = None  # safety cap on wall clock; a run it stops is "budget"
    batch_size: int | None = None  # global clips per iteration; default: the preset's
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    val_videos: int | None = None  # evaluate on the first n val videos only

    def __post_init__(self):
        """Check every setting now, with a message naming it, instead of failing mid-run."""
        for name, least in (("iterations", 1), ("eval_every", 1), ("seed", 0)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < least:
                raise ValueError(
                    f"{name} must be an integer >= {least}, got {getattr(self, name)!r}"
                )
        for name in ("batch_size", "threads", "val_videos"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.lr_drop <= 1:
            raise ValueError(f"lr_drop must be in (0, 1], got {self.lr_drop!r}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise ValueError(f"budget_minutes must be > 0, got {self.budget_minutes!r}")
        self.specs()  # the preset, its overrides and the attention specs

    def specs(self) -> dict:
        """{"encoder": spec, "decoder": spec} as the model will build them."""
        try:
            preset = get_preset(self.preset, **self.overrides)
        except ValueError as error:
            backend_options = {o.name for b in BACKENDS.values() for o in b.OPTIONS}
            misplaced = sorted(set(self.overrides) & backend_options)
            if misplaced:
                raise ValueError(
                    f"{', '.join(misplaced)} is a backend option, not a preset field: put it in "
                    f"the spec, e.g. --backend stdeform:{misplaced[0]}=..."
                ) from None
            raise error
        return attention_specs(preset, self.backend, self.encoder, self.decoder)

    def identity(self) -> dict:
        """The settings that define what the run computes, attention specs resolved and initial
        backbone weights named by their content (a copied results folder is the same run)."""
        identity = {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IDENTIFYING}
        specs = self.specs()
        identity.update(backend=None, encoder=str(specs["encoder"]), decoder=str(specs["decoder"]))
        weights = self.overrides.get("backbone_weights")
        if weights is not None and Path(weights).is_file():
            digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
            identity["overrides"] = {**self.overrides, "backbone_weights": f"sha256:{digest}"}
        return identity

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.run


# ----------------------------------------------------------------------------- wiring


def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(device: str) -> torch.device:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


def data_paths(config: TrainConfig) -> dict[str, Path]:
    """Image roots and annotation files of the train and val splits (bench.data.resolve_data):
    "synthetic" is the suite's synthetic set (bench.data.synthetic.DEFAULT_SPEC),
    "synthetic:FIELD=VALUE,..." another spec, each in data/synthetic-<spec name> and generated
    there when absent; any other value is a directory in the YouTube-VIS layout."""
    return resolve_data(config.data)


@dataclasses.dataclass
class Setup:
    """Everything a run trains with, built from its config."""

    model: torch.nn.Module
    criterion: torch.nn.Module
    postprocess: object
    optimizer: torch.optim.Optimizer
    train_set: YTVISClipDataset
    val_set: YTVISClipDataset
    val_videos: list[int]
    global_batch: int


def build_setup(config: TrainConfig, paths: dict, device: torch.device, world: int) -> Setup:
    """Data, model (identical initial weights on every rank), criterion and optimizer."""
    seed_iteration(config.seed, 0, -1)
    probe = YTVISClipDataset(paths["train_images"], paths["train_annotations"], 1, train=True)
    model, criterion, postprocess = build_model(
        config.preset,
        config.backend,
        num_classes=len(probe.cat_ids),
        category_ids=probe.cat_ids,
        encoder=config.encoder,
        decoder=config.decoder,
        **config.overrides,
    )
    preset = model.preset
    train_set = YTVISClipDataset(
        paths["train_images"],
        probe.ytvis,
        preset.num_frames,
        build_transforms(True, preset.short_side, preset.max_size),
        train=True,
    )
    val_set = YTVISClipDataset(
        paths["val_images"], paths["val_annotations"], preset.num_frames, train=False
    )
    global_batch = config.batch_size or preset.batch_size
    if global_batch % world:
        raise ValueError(f"batch_size={global_batch} is not divisible by {world} processes")
    model.to(device)
    criterion.to(device)
    return Setup(
        model,
        criterion,
        postprocess,
        build_optimizer(model, preset),
        train_set,
        val_set,
        val_set.video_ids[: config.val_videos] if config.val_videos else val_set.video_ids,
        global_batch,
    )


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------- the run


class Clock:
    """Wall clock of a run across resumes: seconds before this process plus seconds in it."""

    def __init__(self, before: float):
        self.before, self.started = before, time.perf_counter()

    def __call__(self) -> float:
        return self.before + time.perf_counter() - self.started


def train(config: TrainConfig, callbacks: tuple[Callable, ...] = ()) -> dict:
    """Train (or resume) one run; returns the final summary (also written to final.json).

    callbacks: each is called as ``callback(iteration, model, rank)`` after every optimizer
    step (e.g. a test saving parameters); they must not change the model.
    """
    rank, world = init_distributed(config.device)
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    files = RunFiles(config.run_dir)
    if rank == 0:
        files.claim(dataclasses.asdict(config), config.identity())
    finished = broadcast(files.finished() if rank == 0 else None)
    if finished is not None:
        return _close(finished)

    setup = build_setup(config, broadcast(data_paths(config) if rank == 0 else None), device, world)
    model, optimizer = setup.model, setup.optimizer
    iteration, clock = restore(files, setup, device, rank)
    trained = model
    if world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # e.g. the reference-point head under full attention
        )
    model.train()
    budget_s = config.budget_minutes * 60 if config.budget_minutes else None
    losses: list[dict] = []
    status, last_eval_s = "ok", 0.0
    progress = tqdm(
        total=config.iterations, initial=iteration, desc=config.run, disable=rank != 0,
        dynamic_ncols=True,
    )  # fmt: skip
    while iteration < config.iterations:
        set_lr(optimizer, lr_factor(iteration, config.iterations, config.lr_drop))
        batch = load_batch(setup.train_set, config.seed, iteration, setup.global_batch, rank, world)
        try:
            losses.append(
                train_step(trained, setup.criterion, optimizer, batch, device,
                           model.preset.clip_max_norm)
            )  # fmt: skip
        except FloatingPointError as error:
            raise FloatingPointError(f"run {config.run}, iteration {iteration}: {error}") from None
        iteration += 1
        progress.update(1)
        for callback in callbacks:
            callback(iteration, model, rank)
        cut = budget_s is not None and clock() + last_eval_s >= budget_s
        if iteration % config.eval_every == 0 or iteration == config.iterations or cut:
            line = checkpoint_evaluation(config, setup, files, iteration, clock, losses, device,
                                         rank, world)  # fmt: skip
            losses, last_eval_s = [], line["eval_s"]
            progress.set_postfix(AP=f"{line['metrics'].get('AP', float('nan')):.3f}")
            if cut and iteration < config.iterations:
                status = "budget"  # the safety cap stopped it: this evaluation is the last
                break
    progress.close()
    summary = None
    if rank == 0:
        summary = summarise(
            config, status, iteration, files.read_log(), model, setup, device, world
        )
        files.finish(summary)
    return _close(broadcast(summary))


def restore(files: RunFiles, setup: Setup, device, rank: int) -> tuple[int, Clock]:
    """Load the last checkpoint into the model and optimizer (and make the log agree with it);
    returns the iteration to continue from and the run's clock."""
    checkpoint = files.load_checkpoint(device)
    if rank == 0:
        files.resume(checkpoint)
    if checkpoint is None:
        return 0, Clock(0.0)
    setup.model.load_state_dict(checkpoint["model"])
    setup.optimizer.load_state_dict(checkpoint["optimizer"])
    return checkpoint["iteration"], Clock(checkpoint["wall_s"])


def checkpoint_evaluation(config, setup, files, iteration, clock, losses, device, rank, world):
    """Evaluate, then (rank 0) checkpoint and log; returns the log line."""
    started = time.perf_counter()
    metrics = evaluate_model(
        setup.model, setup.postprocess, setup.val_set, setup.val_videos, device, rank, world
    )
    line = log_line(config, iteration, clock(), time.perf_counter() - started, losses, metrics,
                    setup.optimizer, len(setup.train_set), setup.global_batch, device, world)  # fmt: skip
    if rank == 0:
        state = {"model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict()}
        files.save({**state, "iteration": iteration, "wall_s": line["wall_s"]}, line)
    if world > 1:
        dist.barrier()
    return line


def _close(summary: dict) -> dict:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return summary


def log_line(config, iteration, wall, eval_s, losses, metrics, optimizer, size, batch, device,
             world) -> dict:  # fmt: skip
    """The log line of one evaluation (see the module docstring)."""
    names = losses[0].keys() if losses else ()
    return {
        "run": config.run,
        "iteration": iteration,
        "epoch": iteration * batch / size,
        "wall_s": wall,
        "device_hours": wall * world / 3600,
        "device_name": device_name(str(device)),
        "n_devices": world,
        "eval_s": eval_s,
        "losses": {k: sum(step[k] for step in losses) / len(losses) for k in names},
        "metrics": metrics,
        "lr": optimizer.param_groups[0]["lr"],
    }


def summarise(config, status, iteration, lines, model, setup, device, world) -> dict:
    """final.json: how the run ended, its last metrics, cost and the environment it ran in."""
    last = lines[-1] if lines else {}
    return {
        "run": config.run,
        "status": status,  # "ok": all iterations; "budget": cut short by the safety cap
        "iterations": iteration,
        "epochs": iteration * setup.global_batch / len(setup.train_set),
        "evaluations": len(lines),
        "val_videos": len(setup.val_videos),  # videos per evaluation
        "wall_s": last.get("wall_s"),
        "device_hours": last.get("device_hours"),
        "eval_s": sum(line.get("eval_s", 0.0) for line in lines),
        "device_name": device_name(str(device)),
        "n_devices": world,
        "metrics": last.get("metrics", {}),
        "peak_memory_MiB": peak_memory_mib(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "attention": {side: str(spec) for side, spec in model.attention.items()},
        "backbone": model.preset.backbone,
        "lr": model.preset.lr,
        # where the run was trained: summaries made later (bench.ablate) keep this provenance
        "environment": environment(str(device)) | {"device_count": world},
    }


def train_from_dict(config: dict) -> dict:
    """Entry point for bench.isolation (one run per subprocess): a TrainConfig as a dict."""
    return train(TrainConfig(**config))


# ----------------------------------------------------------------------------- CLI


def parse_overrides(items: list[str]) -> dict:
    """--set name=value pairs; values parsed as JSON where possible (numbers, lists, null)."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects name=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def build_parser():
    parser = cli.parser("python -m bench.train", __doc__)
    parser.add_argument("--name", dest="run", required=True, help="run name: its folder in --out")
    parser.add_argument("--out", default="results/runs", help="folder of the run folders")
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        help="model preset (models/presets.py)")  # fmt: skip
    parser.add_argument(
        "--backend",
        default="stdeform",
        help="attention spec of encoder and decoder, name[:option=value,...], e.g. "
        "full:impl=math or stdeform:mode=frames,n_points=32",
    )
    parser.add_argument("--encoder", default=None, help="the encoder's spec (default: --backend)")
    parser.add_argument("--decoder", default=None, help="the decoder's spec (default: --backend)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE",
        help="preset overrides (models.presets.Preset fields), e.g. lr=1e-4 d_model=48",
    )  # fmt: skip
    parser.add_argument(
        "--data", default="synthetic", help="'synthetic' or a YouTube-VIS directory"
    )
    parser.add_argument("--iterations", type=cli.positive_int, default=TrainConfig.iterations,
                        help="optimizer steps of the run")  # fmt: skip
    parser.add_argument("--eval-every", type=cli.positive_int, default=TrainConfig.eval_every,
                        help="evaluate (and checkpoint) every this many iterations and at the end")  # fmt: skip
    parser.add_argument("--lr-drop", type=cli.fraction, default=TrainConfig.lr_drop,
                        help="the learning rate drops x0.1 after this fraction of the iterations")  # fmt: skip
    parser.add_argument("--budget-minutes", type=cli.positive_float, default=None,
                        help="safety cap on wall clock (a run it stops is marked 'budget')")  # fmt: skip
    parser.add_argument("--batch-size", type=cli.positive_int, default=None,
                        help="clips per iteration over all processes (default: the preset's)")  # fmt: skip
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0,
                        help="data order and initial weights")  # fmt: skip
    parser.add_argument("--device", type=cli.device, default="cpu", help="cpu, cuda or cuda:<i>")
    parser.add_argument("--threads", type=cli.positive_int, default=None,
                        help="torch threads (default: torch's)")  # fmt: skip
    parser.add_argument("--val-videos", type=cli.positive_int, default=None,
                        help="evaluate on the first n val videos (default: all)")  # fmt: skip
    return parser


def config_from_args(args) -> TrainConfig:
    """The run the command line describes (every setting checked: TrainConfig)."""
    return TrainConfig(
        run=args.run,
        out=args.out,
        preset=args.preset,
        backend=args.backend,
        encoder=args.encoder,
        decoder=args.decoder,
        overrides=parse_overrides(args.set),
        data=args.data,
        iterations=args.iterations,
        eval_every=args.eval_every,
        lr_drop=args.lr_drop,
        budget_minutes=args.budget_minutes,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        val_videos=args.val_videos,
    )


def main(argv: list[str] | None = None, callbacks: tuple[Callable, ...] = ()) -> dict:
    """The command line; ``callbacks`` go to train (a test's hooks)."""
    config = config_from_args(build_parser().parse_args(argv))
    cli.writable_dir(config.run_dir, "run folder")
    summary = train(config, callbacks)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    cli.run("python -m bench.train", main)
