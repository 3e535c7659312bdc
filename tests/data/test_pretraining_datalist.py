"""The pretraining datalist: a run of one modality only is said, naming the datalist (a DRR run's folder trained on CT
alone without a word), and the documented way to add radiographs to a DRR run's pairs, a copy of its datalist.json
beside it, reads both."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from unimiss_monai.data.pretraining_datalist import load_pretraining_datalist
from unimiss_monai.engines.drr_generation import DRRGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
from drr_phantoms import phantom_case  # noqa: E402


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def _write(folder: Path, sections: dict) -> Path:
    for name in ("ct.nii.gz", "drr.png", "cxr.png"):
        (folder / name).write_bytes(b"")  # only their existence is checked here
    (folder / "datalist.json").write_text(json.dumps(sections))
    return folder / "datalist.json"


def test_a_datalist_of_one_modality_is_said(tmp_path, caplog):
    ct, xray = [{"image": "ct.nii.gz", "drr": "drr.png"}], [{"image": "cxr.png"}]
    with caplog.at_level("WARNING"):
        both = load_pretraining_datalist(_write(tmp_path, {"ct": ct, "xray": xray}))
        assert _warnings(caplog) == [] and len(both["ct"]) == len(both["xray"]) == 1
        load_pretraining_datalist(_write(tmp_path, {"ct": ct}))
        load_pretraining_datalist(_write(tmp_path, {"xray": xray}))
    datalist = tmp_path / "datalist.json"
    assert _warnings(caplog) == [
        f"{datalist} has no 'xray' entries, so pretraining trains on CT alone; UniMiSS learns from CT and X-rays: list "
        "them in a 'xray' section; for a DRR run's folder, in a copy of its datalist.json beside it, passed as "
        "--datalist (the DRR bundle rewrites its own)",
        f"{datalist} has no 'ct' entries, so pretraining trains on X-rays alone; UniMiSS learns from CT and X-rays: "
        "list them in a 'ct' section"]


def test_radiographs_added_to_a_drr_run_in_a_copy_of_its_datalist(tmp_path, caplog):
    data, out = tmp_path / "cts", tmp_path / "drr"
    data.mkdir()
    phantom_case(data, "ct01", labels=False)
    DRRGenerator(data, out, views=["AP"], slab_depth=100.0, slab_detector_shape=(24, 24), progress=False).run()
    (tmp_path / "cxr").mkdir()
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(tmp_path / "cxr" / "chest.png")
    mine = out / "pretraining.json"
    shutil.copy(out / "datalist.json", mine)
    mine.write_text(json.dumps({**json.loads(mine.read_text()), "xray": [{"image": "../cxr/chest.png"}]}))
    with caplog.at_level("WARNING"):
        sections = load_pretraining_datalist(mine)
    pairs = json.loads((out / "datalist.json").read_text())["training"]
    expected = [(str(out / p["ct"]), str(out / p["drr"])) for p in pairs]
    assert [(c["image"], c["drr"]) for c in sections["ct"]] == expected
    assert len(pairs) == 2 and sections["xray"] == [{"image": str(tmp_path / "cxr" / "chest.png")}]
    assert not [w for w in _warnings(caplog) if "entries, so pretraining trains on" in w]
