"""The process registry: inputs are files by URL or upload, never server paths."""

from __future__ import annotations

import pytest

from gdmio.errors import InputError
from workflows.processes import JobContext, get_process


def _ctx(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name in ("a_20230101.tif", "b_20230201.tif"):
        (uploads / name).write_bytes(b"not read in this test")
    return JobContext(job_id="j", workdir=tmp_path / "work", uploads_dir=uploads,
                      progress=lambda f, m: None)


@pytest.mark.parametrize("stable", ["/etc/passwd", "../secret.tif", "file:///etc/passwd"])
def test_gdm_opt_stable_mask_cannot_name_a_server_file(tmp_path, stable):
    spec = get_process("gdm-opt")
    inputs = spec.validate_inputs({"images": ["a_20230101.tif", "b_20230201.tif"],
                                   "stable": stable})
    with pytest.raises(InputError, match="refused|unsupported|no uploaded"):
        spec.execute(inputs, _ctx(tmp_path))


def test_unknown_process_names_the_known_ones():
    with pytest.raises(KeyError, match="gdm-opt"):
        get_process("nope")
