"""Predictions of a trained run as a YouTube-VIS results file.

    python -m bench.infer --run results/runs/stdeform-frames-k16-seed0 --out results.json
    python -m bench.evaluation --gt <data>/annotations/instances_val.json --results results.json

The run's config.json says how to build its model and where its data is; checkpoint.pt holds the
weights (loaded with weights_only=True). Every video of the split (or the first --videos) runs
through the long-video inference of models.postprocess.InferenceRunner, as the run's own
evaluations did, and the results list (bench.data.results) is written to --out.
"""

import dataclasses
import json
from pathlib import Path

import torch

from bench import cli
from bench.data.dataset import YTVISClipDataset
from bench.data.results import save_results
from bench.engine import predict_videos
from bench.runfiles import RunFiles
from bench.train import TrainConfig, data_paths, resolve_device
from models import build_model


def load_run(run_dir: str | Path, split: str, data: str | None = None):
    """(config, dataset of ``split``, model with the checkpoint's weights, postprocess)."""
    files = RunFiles(run_dir)
    if not files.config.exists():
        raise FileNotFoundError(f"{files.directory} is not a run folder (no config.json)")
    recorded = json.loads(files.config.read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in recorded.items() if k in fields})
    if data is not None:
        config = dataclasses.replace(config, data=data)
    checkpoint = files.load_checkpoint("cpu")
    if checkpoint is None:
        raise FileNotFoundError(f"{files.directory} has no checkpoint.pt (it never evaluated)")
    paths = data_paths(config)
    dataset = YTVISClipDataset(paths[f"{split}_images"], paths[f"{split}_annotations"], 1)
    overrides = {k: v for k, v in config.overrides.items() if k != "backbone_weights"}
    model, _, postprocess = build_model(
        config.preset, config.backend, num_classes=len(dataset.cat_ids),
        category_ids=dataset.cat_ids, encoder=config.encoder, decoder=config.decoder, **overrides,
    )  # fmt: skip
    model.load_state_dict(checkpoint["model"])
    return config, dataset, model, postprocess


def build_parser():
    parser = cli.parser("python -m bench.infer", __doc__)
    parser.add_argument("--run", required=True, help="a run folder (bench.train's <out>/<run>)")
    parser.add_argument("--split", default="val", choices=["val", "train"],
                        help="the split whose videos are predicted")  # fmt: skip
    parser.add_argument("--data", default=None, help="data to predict on (default: the run's)")
    parser.add_argument("--videos", type=cli.positive_int, default=None,
                        help="predict the first n videos only (default: all)")  # fmt: skip
    parser.add_argument("--device", type=cli.device, default="cpu", help="cpu, cuda or cuda:<i>")
    parser.add_argument("--threads", type=cli.positive_int, default=None,
                        help="torch threads (default: torch's)")  # fmt: skip
    parser.add_argument("--out", required=True, help="results file to write (JSON)")
    return parser


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    cli.writable_dir(out.parent, "output folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    _, dataset, model, postprocess = load_run(args.run, args.split, args.data)
    video_ids = dataset.video_ids[: args.videos] if args.videos else dataset.video_ids
    results = predict_videos(model.to(device), postprocess, dataset, video_ids, device)
    save_results(results, out)
    print(f"wrote {len(results)} predicted instances of {len(video_ids)} videos to {out}")
    return out


if __name__ == "__main__":
    cli.run("python -m bench.infer", main)
