"""What the jobs copy out of their temporary folders (reports, summaries, JSON next to models
and prepared features) gets the modes of the process umask, not the 0700/0600 of a
``TemporaryDirectory``, so a scoring service or a report reader running as another user can read
it."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from spark_clustering.jobs.io import put_local_dir
from spark_clustering.jobs.pipeline import write_json


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _modes(root):
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
    out["."] = stat.S_IMODE(os.stat(root).st_mode)
    return out


def test_copies_follow_the_umask(umask, tmp_path):
    dest = tmp_path / "run"
    with tempfile.TemporaryDirectory() as local:
        os.makedirs(os.path.join(local, "charts"))
        for name in ("report.html", os.path.join("charts", "scatter.png")):
            with open(os.path.join(local, name), "w") as fh:
                fh.write("x")
        put_local_dir(None, local, str(dest))
    write_json(None, {"a": 1}, str(dest / "model"), "pipeline.json")
    modes = _modes(dest)
    folders, files = 0o777 & ~umask, 0o666 & ~umask
    assert modes == {
        ".": folders, "charts": folders, "model": folders,
        "report.html": files, os.path.join("charts", "scatter.png"): files,
        os.path.join("model", "pipeline.json"): files,
    }  # fmt: skip
