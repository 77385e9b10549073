"""egodistill.atomic: a file is replaced whole or not at all, and no temporary file stays."""
import json
from pathlib import Path

import pytest

from egodistill.atomic import atomic_path, temp_path, write_json, write_text


def test_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "a.json"
    write_text(path, "old")
    assert write_json(path, {"x": [1, 2]}) == path
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    path = tmp_path / "a.json"
    write_text(path, "old")
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")}, allow_nan=False)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_the_temporary_file_is_beside_the_target():
    assert temp_path("/d/x.h5").as_posix() == "/d/x.h5.tmp"
    assert temp_path("/d/clip.mp4", keep_suffix=True).as_posix() == "/d/.clip.tmp.mp4"  # writers that read the suffix


def test_nearest_existing_is_the_path_or_its_closest_existing_folder(tmp_path):
    from egodistill.atomic import nearest_existing

    (tmp_path / "a").mkdir()
    assert nearest_existing(tmp_path / "a") == tmp_path / "a"
    assert nearest_existing(tmp_path / "a" / "b" / "c.h5") == tmp_path / "a"
    assert nearest_existing(Path("/")) == Path("/")
