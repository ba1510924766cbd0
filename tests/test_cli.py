"""Tests for ``python -m ganviz dissect``: outputs, errors, subcommand wiring, and torchrun sharding."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganviz.__main__ import add_dissect_parser, main
from ganviz.dissect import DissectionResult

torch.set_num_threads(1)
TESTS = Path(__file__).parent
ROOT = TESTS.parent
# 64 images in chunks of 16 (4 chunks, 2 per rank under 2 processes); a small sketch resolution makes the
# quantile sketches compact inside the chunks, so the sharded merge is really exercised.
SMALL = ["--layer", "conv5_3", "--images", "64", "--batch-size", "16", "--chunk-size", "16",
         "--sketch-resolution", "200", "--no-progress", "--device", "cpu"]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def test_dissect_writes_result_chart_and_summary(tmp_path, capsys):
    assert main(["dissect", "--model", "_factories:classifier", *SMALL, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "layer conv5_3 (classifier): 192 units, 64 images" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dissect_conv5_3.json", "dissect_conv5_3.npz", "dissect_conv5_3_concepts.png"]
    result = DissectionResult.load(tmp_path / "dissect_conv5_3.npz")
    summary = json.loads((tmp_path / "dissect_conv5_3.json").read_text())
    assert summary["concept_counts"] == result.concept_counts(0.04)
    assert len(summary["units"]) == sum(summary["concept_counts"].values())
    for line in (f"  {c}" for c in summary["concept_counts"]):
        assert line in out
    assert (tmp_path / "dissect_conv5_3_concepts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.topk_indices.shape == (192, 64) and result.params["chunk"] == 16


def test_dissect_generator_from_import_paths(tmp_path):
    args = ["dissect", "--model", "_factories:generator", "--layer", "layer4", "--segmenter",
            "_factories:segmenter", "--images", "8", "--batch-size", "4", "--no-progress", "--device", "cpu",
            "--out", str(tmp_path)]
    assert main(args) == 0
    result = DissectionResult.load(tmp_path / "dissect_layer4.npz")
    assert result.model_kind == "generator" and result.iou.shape == (256, 16) and result.num_images == 8


def test_cli_errors(tmp_path, capsys):
    assert main(["dissect", "--model", "_factories:classifier", "--layer", "conv5_4", "--images", "4",
                 "--no-progress", "--out", str(tmp_path)]) == 2
    assert "closest: conv5_3" in capsys.readouterr().err
    assert main(["dissect", "--model", "_factories:classifier", "--layer", "conv5_3", "--images", "0",
                 "--no-progress", "--out", str(tmp_path)]) == 2
    assert "expected at least 1 image" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no bundled model 'toy-nothing'"):
        main(["dissect", "--model", "toy-nothing", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="cannot import"):
        main(["dissect", "--model", "no_such_module_xyz:f", "--layer", "x", "--out", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []
    assert main([]) == 2


def test_dissect_parser_composes_with_other_subcommands():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_dissect_parser(sub)
    sub.add_parser("app")
    assert parser.parse_args(["app"]).command == "app"
    args = parser.parse_args(["dissect", "--model", "toy-classifier", "--layer", "conv4_1"])
    assert args.command == "dissect" and args.layer == "conv4_1" and args.images == 5000 and callable(args.func)


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "ganviz", "dissect", "--help"], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert out.returncode == 0 and "--segmenter" in out.stdout


def test_torchrun_two_processes_match_one(tmp_path):
    """Two gloo ranks give the same result as one process.

    Images are cut into fixed chunks (independent of the number of ranks); each chunk gets its own quantile
    sketch and rank 0 merges the sketches in chunk order, so thresholds are bit-identical; top-k (ties by
    index) and IoU counts (integer sums) are exact.
    """
    single, multi = tmp_path / "one", tmp_path / "two"
    assert main(["dissect", "--model", "_factories:classifier", *SMALL, "--out", str(single)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ganviz", "dissect", "--model", "_factories:classifier", *SMALL, "--out", str(multi)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # only rank 0 writes
    a = DissectionResult.load(single / "dissect_conv5_3.npz")
    b = DissectionResult.load(multi / "dissect_conv5_3.npz")
    np.testing.assert_array_equal(a.topk_indices, b.topk_indices)
    np.testing.assert_array_equal(a.topk_values, b.topk_values)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    np.testing.assert_array_equal(a.intersection, b.intersection)
    np.testing.assert_array_equal(a.unit_area, b.unit_area)
    np.testing.assert_array_equal(a.concept_area, b.concept_area)
    np.testing.assert_allclose(a.iou, b.iou, rtol=0, atol=1e-6)
    assert a.num_images == b.num_images == 64 and a.pixels == b.pixels


def test_app_command_serves_the_packaged_notebook():
    from ganviz import apps
    from ganviz.__main__ import build_parser

    args = build_parser().parse_args(["app", "--port", "9999", "--no-browser"])
    assert (args.name, args.port, args.no_browser) == ("paint", 9999, True)
    cmd = apps.voila_command("paint", 9999, open_browser=False)
    assert cmd[1:3] == ["-m", "voila"] and cmd[3].endswith("paint.ipynb") and "--no-browser" in cmd
    assert "--port=9999" in cmd and "--Voila.ip=127.0.0.1" in cmd and apps.notebook().exists()
    with pytest.raises(KeyError, match="no app 'nope'"):
        apps.notebook("nope")


def test_paint_app_widget_builds_on_the_bundled_gan():
    from ganviz.apps import paint_app

    app = paint_app(seed=2)
    assert app.canvas.painter.layer == "layer4" and "tree" in app.canvas.concept.options
    assert app.canvas.image.shape == (64, 64, 3)


def test_app_extra_installs_what_voila_needs_to_run_the_app():
    """A fresh venv with only ``.[app]`` must serve the app: Voila needs a Python kernel (ipykernel)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    app = cfg["options.extras_require"]["app"].split()
    assert any(r.startswith("voila") for r in app) and any(r.startswith("ipykernel") for r in app), app
