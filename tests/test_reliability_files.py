"""Files a careless or hostile user hands to ganviz: devices, decompression bombs, unsafe pickles."""
import os
import pickle
import zipfile

import pytest
import torch

import ganviz
from ganviz.checkpoints import CheckpointError, read_checkpoint
from ganviz.zoo import registry


def test_a_device_or_directory_is_refused_at_once(tmp_path):
    if os.path.exists("/dev/zero"):
        with pytest.raises(CheckpointError, match="not a regular file"):
            read_checkpoint("/dev/zero")
    with pytest.raises(CheckpointError, match="directory"):
        read_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.pth")


def test_zoo_load_refuses_a_weights_path_that_is_a_device(tmp_path, monkeypatch):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    (tmp_path / "manifest.json").write_text('{"toy-gan": {"file": "zero", "sha256": "0"}}')
    os.symlink("/dev/zero", tmp_path / "zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        registry.load("toy-gan", folder=tmp_path)


def test_a_deflate_bomb_named_pth_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("archive/data/0", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(300):  # 300 MiB of zeros in about 300 kB
                f.write(block)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(CheckpointError, match="decompression bomb"):
        read_checkpoint(path)


def test_an_ordinary_torch_file_still_loads(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"w": torch.ones(3)}, path)
    assert torch.equal(read_checkpoint(path)["w"], torch.ones(3))


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_messages_never_advise_weights_only_false(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    for bad in (path, tmp_path / "garbage.pth"):
        if bad.name == "garbage.pth":
            bad.write_bytes(b"not a checkpoint at all" * 10)
        with pytest.raises(CheckpointError) as info:
            ganviz.checkpoints.load_state(bad)
        assert "weights_only=False" not in str(info.value) and "weights_only` set to `False" not in str(info.value)
