"""DRRGenerator: an empty CT and a CT holding nothing denser than air each fail alone, with one line naming the file
and the fix; the good CT beside them is rendered. An all-air CT used to render an all-zero DRR marked ok."""

from __future__ import annotations

import json

import numpy as np
import pytest
from drr_phantoms import SMALL
from drr_phantoms import phantom_case as _phantom_case

from unimiss_monai.data import save_nifti
from unimiss_monai.engines import DRRGenerationError, DRRGenerator


def test_empty_and_air_only_cts_fail_alone(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "good", labels=False)
    save_nifti(np.zeros((64, 0, 30), np.float32), np.diag([2.0, 2.0, 5.0, 1.0]), data / "empty.nii.gz")
    save_nifti(np.full((32, 28, 20), -1000.0, np.float32), np.diag([8.0, 8.0, 10.0, 1.0]), data / "air.nii.gz")
    with pytest.raises(DRRGenerationError) as info:
        DRRGenerator(data, out, **SMALL).run()
    message = str(info.value)
    assert message.startswith("2 of 3 CT(s) failed")
    assert f"{data / 'empty.nii.gz'}: the volume is empty (shape (64, 0, 30)); re-export it" in message
    assert "2D image" not in message
    assert (f"{data / 'air.nii.gz'}: holds nothing denser than air (max -1000 HU); check the export (rescale "
            "slope/intercept) or drop the case") in message
    assert sorted(p.name for p in out.iterdir()) == ["datalist.json", "good"]  # nothing written for either
    summary = json.loads((out / "datalist.json").read_text())
    assert len(summary["failures"]) == 2 and len(summary["testing"]) == 2  # the good CT's two views
