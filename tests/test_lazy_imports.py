"""Importing the package costs nothing until a name is used; moved names still resolve from their old modules, with a
``DeprecationWarning`` naming the new place."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "monai", "numpy", "numba", "ignite", "unimiss_monai.drr", "unimiss_monai.networks",
         "unimiss_monai.engines", "unimiss_monai.data")


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_import_loads_no_subpackage_until_one_is_used():
    loaded = _python(
        "import sys, unimiss_monai\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "unimiss_monai.drr.render\n"
        "print('torch' in sys.modules and 'unimiss_monai.drr' in sys.modules)"
    ).splitlines()
    assert loaded == ["[]", "True"]  # nothing heavy at import; a config's `unimiss_monai.drr.render` still works


def test_cli_help_imports_nothing_heavy():
    code = ("import sys, runpy\nsys.argv = ['unimiss_monai', '--help']\n"
            "try:\n    runpy.run_module('unimiss_monai', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert _python(code).splitlines()[-1] == "[]"


MOVED = [
    ("unimiss_monai.engines", "StudentTeacher", "unimiss_monai.networks.nets.student_teacher"),
    ("unimiss_monai.engines", "PhaseLoader", "unimiss_monai.data.loaders"),
    ("unimiss_monai.engines", "load_pretraining_datalist", "unimiss_monai.data.pretraining_datalist"),
    ("unimiss_monai.engines", "CheckSpatialDimsd", "unimiss_monai.transforms.utility"),
    ("unimiss_monai.engines.pretraining_data", "ResumableSampler", "unimiss_monai.data.loaders"),
    ("unimiss_monai.engines.pretraining_data", "make_loader", "unimiss_monai.data.loaders"),
    ("unimiss_monai.engines.student_teacher", "MultiCropWrapper", "unimiss_monai.networks.nets.student_teacher"),
]


@pytest.mark.parametrize("old, name, new", MOVED)
def test_moved_names_warn_and_resolve_to_the_new_object(old, name, new):
    with pytest.warns(DeprecationWarning, match=rf"^{old}\.{name} moved to {new}\.{name}$"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_new_paths_do_not_warn_and_unknown_names_fail():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from unimiss_monai.data import PhaseLoader, load_pretraining_datalist  # noqa: F401
        from unimiss_monai.engines import PretrainingTrainer  # noqa: F401
        from unimiss_monai.networks import StudentTeacher  # noqa: F401
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        importlib.import_module("unimiss_monai.engines").nope  # noqa: B018
