"""Where data comes from: the YouTube-VIS directory layout, the --data resolver, and training's
data_paths, which must never touch a synthetic set the suite did not just write."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from bench.data import layout, resolve_data
from bench.data import synthetic as synthetic_module
from bench.data.synthetic import SpecError, SyntheticSpec, ensure_synthetic

TINY = SyntheticSpec(videos=2, val_videos=1, frames=2, size=(16, 16), seed=3)
TINY_TEXT = "videos=2,val_videos=1,frames=2,size=16x16,seed=3"


def read_tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_names_each_piece_and_the_missing_one(tmp_path):
    paths = layout(tmp_path)
    assert paths == {
        "root": tmp_path,
        "train_images": tmp_path / "train" / "JPEGImages",
        "train_annotations": tmp_path / "annotations" / "instances_train.json",
        "val_images": tmp_path / "val" / "JPEGImages",
        "val_annotations": tmp_path / "annotations" / "instances_val.json",
    }
    generated = ensure_synthetic(TINY, tmp_path)  # the generator writes this layout
    assert {k: v for k, v in generated.items() if k != "manifest"} == paths
    assert layout(tmp_path, check=True) == paths
    for key in ("val_annotations", "train_images"):
        moved = paths[key].with_name("moved")
        paths[key].rename(moved)
        with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path))}: {key} "):
            layout(tmp_path, check=True)
        moved.rename(paths[key])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        layout(tmp_path / "nowhere", check=True)


def test_resolve_a_synthetic_spec_into_its_own_folder(tmp_path):
    paths = resolve_data(f"synthetic:{TINY_TEXT}", root=tmp_path)
    assert paths["root"] == tmp_path / f"synthetic-{TINY.name()}"
    manifest = json.loads(paths["manifest"].read_text())
    assert SyntheticSpec.from_dict(manifest["spec"]) == TINY
    stamp = paths["manifest"].stat().st_mtime_ns
    assert resolve_data(f"synthetic:{TINY_TEXT}", root=tmp_path) == paths
    assert paths["manifest"].stat().st_mtime_ns == stamp  # reused
    # omitted fields take the defaults
    assert resolve_data("synthetic:videos=2,frames=2,size=16x16,seed=3", root=tmp_path) == paths
    with pytest.raises(SpecError, match="field 'vidoes'"):
        resolve_data("synthetic:vidoes=2", root=tmp_path)


def test_resolve_a_directory_or_a_typo(tmp_path):
    ensure_synthetic(TINY, tmp_path / "mine")
    assert resolve_data(str(tmp_path / "mine")) == layout(tmp_path / "mine")
    with pytest.raises(FileNotFoundError, match=r"'synthetc' is neither 'synthetic'"):
        resolve_data("synthetc", root=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train_images"):
        resolve_data(str(tmp_path / "empty"))


def test_training_default_leaves_a_users_synthetic_folder_alone(tmp_path, monkeypatch):
    """A user's data/synthetic made with other settings is neither used, deleted nor rewritten:
    the suite's default set goes to data/synthetic-<its spec name>."""
    from bench.train import TrainConfig, data_paths

    monkeypatch.chdir(tmp_path)
    users = dataclasses.replace(TINY, videos=3, seed=0)
    ensure_synthetic(users, Path("data/synthetic"))
    before = read_tree(tmp_path / "data" / "synthetic")
    monkeypatch.setattr(synthetic_module, "DEFAULT_SPEC", TINY)  # small, to keep the test fast
    config = TrainConfig(run="x")
    assert config.data == "synthetic" and not hasattr(config, "synthetic")
    paths = data_paths(config)
    assert paths["root"] == Path(f"data/synthetic-{TINY.name()}")
    assert read_tree(tmp_path / "data" / "synthetic") == before
    assert json.loads(paths["manifest"].read_text())["spec"] == TINY.to_dict()
    assert data_paths(TrainConfig(run="x", data="data/synthetic")) == layout("data/synthetic")


def test_the_ablations_pretraining_set_leaves_a_users_synthetic_folder_alone(tmp_path, monkeypatch):
    """bench.ablate's runs resolve --data as bench.train does (above); its shared backbone's set
    (pretraining_data) goes to a folder of its own spec too."""
    from bench.data.source import PRETRAIN_SEED_OFFSET, pretraining_data

    monkeypatch.chdir(tmp_path)
    ensure_synthetic(dataclasses.replace(TINY, videos=3, seed=0), Path("data/synthetic"))
    before = read_tree(tmp_path / "data" / "synthetic")
    monkeypatch.setattr(synthetic_module, "DEFAULT_SPEC", TINY)
    source, disjoint = pretraining_data("synthetic")
    paths = resolve_data(source)
    other = dataclasses.replace(TINY, seed=TINY.seed + PRETRAIN_SEED_OFFSET, val_videos=1)
    assert disjoint and paths["root"] == Path(f"data/synthetic-{other.name()}")
    assert read_tree(tmp_path / "data" / "synthetic") == before
