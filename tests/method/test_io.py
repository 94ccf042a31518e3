# SPDX-License-Identifier: Apache-2.0
"""Atomic writes and checked reads of the method's files."""

import os

import numpy as np
import pytest
import torch

from lcengine.method import figures, io


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    io.atomic_write_bytes(target, b"old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]  # the temporary file is gone


def test_json_round_trip_and_errors(tmp_path):
    io.atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1.5]})
    assert io.read_json_file(tmp_path / "a.json", "test") == {"a": [1.5], "b": 1}
    with pytest.raises(ValueError):  # strict JSON: no NaN
        io.atomic_write_json(tmp_path / "n.json", {"x": float("nan")})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"test: corrupted JSON in .*bad\.json"):
        io.read_json_file(tmp_path / "bad.json", "test")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        io.read_json_file(tmp_path / "list.json", "test")
    with pytest.raises(ValueError, match="test: missing file"):
        io.read_json_file(tmp_path / "none.json", "test")


def test_tensors_are_checked_against_the_expected_ones(tmp_path):
    path = tmp_path / "t.safetensors"
    blob = io.save_tensors_atomic(path, {"w": torch.ones(2, 3)}, metadata={"k": "v"})
    assert path.read_bytes() == blob
    expected = {"w": torch.zeros(2, 3)}
    assert torch.equal(io.load_tensors_checked(path, expected, "t")["w"], torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"missing tensors \['v'\]"):
        io.load_tensors_checked(path, {**expected, "v": torch.zeros(1)}, "t")
    with pytest.raises(ValueError, match="has shape"):
        io.load_tensors_checked(path, {"w": torch.zeros(3, 2)}, "t")
    io.save_tensors_atomic(path, {"w": torch.full((2, 3), float("inf"))})
    with pytest.raises(ValueError, match="'w' contains NaN or infinite"):
        io.load_tensors_checked(path, expected, "t")
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"corrupted safetensors file .*t\.safetensors"):
        io.load_tensors_checked(path, expected, "t")


def test_npz_and_image_grid(tmp_path):
    io.write_npz(tmp_path / "a.npz", x=np.arange(3), names=np.array(["a", "b"]))
    with np.load(tmp_path / "a.npz") as f:
        assert f["x"].tolist() == [0, 1, 2] and f["names"].tolist() == ["a", "b"]
    figures.write_image_grid(tmp_path / "g.png", [("row", np.zeros((3, 5, 5)))], "title")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2-D images"):
        figures.write_image_grid(tmp_path / "h.png", [("row", np.zeros((3, 5)))], "title")


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        io.atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o640


def test_output_paths_that_cannot_be_files_are_named(tmp_path):
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(ValueError, match="--out .* is a folder"):
        io.check_output_path("--out", tmp_path)
    with pytest.raises(ValueError, match="--png .*a_file is a file, not a folder"):
        io.check_output_path("--png", tmp_path / "a_file" / "x.png")
    assert io.check_output_path("--out", tmp_path / "new" / "deeper" / "x.npz").name == "x.npz"
