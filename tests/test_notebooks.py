"""The notebooks execute (tiny settings), so they never rot."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("nbclient")
pytest.importorskip("mauve")


@pytest.mark.parametrize("name", ["mauve_comparison.ipynb"])
def test_notebook_executes(name, tmp_path):
    out = tmp_path / name
    env = dict(os.environ, EPSVEC_NOTEBOOK_QUICK="1")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), str(ROOT / "notebooks" / name),
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import nbformat

    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    outputs = [str(o.get("data", {})) + str(o.get("text", "")) for c in nb.cells for o in c.get("outputs", [])]
    assert any("pooled_mauve" in o for o in outputs), "the table rendered"
    if importlib.util.find_spec("invink") is not None:
        assert any("InvisibleInk eps=4 (peer)" in o for o in outputs), "the peer ran and was scored"
