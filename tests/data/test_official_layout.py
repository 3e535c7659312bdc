"""``python -m unimiss_monai official-datalist``: the official UniMiSS(+) data root as a pretraining datalist, read
back by ``load_pretraining_datalist`` and put through the pretraining bundle's preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from unimiss_monai.cli import main
from unimiss_monai.data.writers import save_nifti, save_png
from unimiss_monai.data.pretraining_datalist import load_pretraining_datalist

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "unimiss_pretraining" / "configs"


def _official_root(root: Path) -> Path:
    """A tiny data root in the reference layout: sub-volumes with same-name PNG DRRs, X-ray PNGs, list files (the
    3D list also names a DRR, as listSSL.py does when run after rendering), plus one of each thing that cannot pair."""
    rng = np.random.default_rng(0)
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    sub = root / "3D_subvolumes"
    for name in ("000001_01_01_103-115_dep0", "000001_01_01_103-115_dep1", "000002_01_01_008-023_dep0"):
        save_nifti(rng.uniform(-1000, 800, (40, 40, 24)).astype(np.int16), affine, sub / f"{name}.nii.gz")
    save_png(rng.integers(0, 255, (48, 40), dtype=np.uint8), sub / "000001_01_01_103-115_dep0.png")
    save_png(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8), sub / "000001_01_01_103-115_dep1.png")  # colour DRR
    save_png(rng.integers(0, 255, (48, 40), dtype=np.uint8), sub / "orphan_dep0.png")  # a DRR without its CT
    for name in ("00000001_000", "00000002_000"):
        save_png(rng.integers(0, 255, (64, 56), dtype=np.uint8), root / "2D_images" / f"{name}.png")
    (root / "3D_images.txt").write_text("\n".join([
        "3D_subvolumes/000001_01_01_103-115_dep0.nii.gz", "3D_subvolumes/000001_01_01_103-115_dep0.png",
        "3D_subvolumes/000001_01_01_103-115_dep1.nii.gz", "3D_subvolumes/000002_01_01_008-023_dep0.nii.gz",
        "3D_subvolumes/000003_01_01_000-010_dep0.nii.gz", "3D_subvolumes/orphan_dep0.png", ""]))
    (root / "2D_images.txt").write_text("2D_images/00000001_000.png\n2D_images/00000002_000.png\n2D_images/missing.png\n")
    return root


def _run(capsys, *args) -> tuple[int, str, str]:
    """The command in process: (exit code, stdout, stderr), a ``SystemExit`` message counted as stderr as Python does,
    and a refusal (``FileExistsError``) as the command line's error hook prints it: one line, exit status 1."""
    code, message = 0, ""
    try:
        main(["official-datalist", *args])
    except SystemExit as e:
        code, message = (e.code, "") if isinstance(e.code, int) else (1, str(e.code))
    except FileExistsError as e:
        code, message = 1, str(e)
    out, err = capsys.readouterr()
    return code, out, err + message


def test_pairs_ct_with_drr_names_what_it_cannot_pair_and_never_overwrites(tmp_path, capsys):
    root = _official_root(tmp_path / "data")
    out = root / "datalist.json"
    code, stdout, stderr = _run(capsys, "--root", str(root), "--out", str(out))
    assert code == 0, stderr
    lines = stderr.strip().splitlines()
    # one line for each file left out, naming it
    assert len(lines) == 4, lines
    assert any("000002_01_01_008-023_dep0.nii.gz: no DRR 000002_01_01_008-023_dep0.png" in line for line in lines)
    assert any("000003_01_01_000-010_dep0.nii.gz: listed in 3D_images.txt but missing" in line for line in lines)
    assert any("orphan_dep0.png: a DRR with no CT sub-volume" in line for line in lines)
    assert any("missing.png: listed in 2D_images.txt but missing" in line for line in lines)
    assert "2 CT (2 with DRR) and 2 X-ray entries" in stdout
    written = json.loads(out.read_text())
    assert written["ct"][1] == {"image": "3D_subvolumes/000001_01_01_103-115_dep1.nii.gz", "drr": "3D_subvolumes/000001_01_01_103-115_dep1.png"}

    # never replaced unless asked
    before = out.read_bytes()
    code, _, stderr = _run(capsys, "--root", str(root), "--out", str(out), "--require_drr", "False")
    assert code != 0 and "exists and is not replaced: pass --overwrite" in stderr and out.read_bytes() == before
    code, _, _ = _run(capsys, "--root", str(root), "--out", str(out), "--require_drr", "False", "--overwrite")
    assert code == 0
    relaxed = json.loads(out.read_text())["ct"]
    assert len(relaxed) == 3 and "drr" not in relaxed[2]

    # nothing usable: non-zero exit, nothing written
    (tmp_path / "empty").mkdir()
    code, _, stderr = _run(capsys, "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "empty" / "d.json"))
    assert code != 0 and "no usable CT or X-ray" in stderr and not (tmp_path / "empty" / "d.json").exists()


def test_without_list_files_the_folders_are_searched(tmp_path, capsys):
    root = _official_root(tmp_path / "data")
    (root / "3D_images.txt").unlink()
    (root / "2D_images.txt").unlink()
    code, stdout, stderr = _run(capsys, "--root", str(root), "--out", str(tmp_path / "elsewhere" / "list.json"))
    assert code == 0, stderr
    data = json.loads((tmp_path / "elsewhere" / "list.json").read_text())
    assert len(data["ct"]) == 2 and len(data["xray"]) == 2
    # paths relative to the datalist's folder, wherever it is
    assert all((tmp_path / "elsewhere" / e["drr"]).resolve().is_file() for e in data["ct"])


def test_output_feeds_the_pretraining_preprocessing(tmp_path, capsys):
    from monai.bundle import ConfigParser

    root = _official_root(tmp_path / "data")
    assert _run(capsys, "--root", str(root), "--out", str(root / "datalist.json"))[0] == 0
    data = load_pretraining_datalist(root / "datalist.json")
    assert [Path(e["drr"]).name for e in data["ct"]] == ["000001_01_01_103-115_dep0.png", "000001_01_01_103-115_dep1.png"]

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "smoke.yaml")])
    parser.update({"dataset_dir": str(root), "output_dir": str(tmp_path / "out")})
    ct_set, xray_set = parser.get_parsed_content("train#dataset"), parser.get_parsed_content("train#xray_dataset")
    for index in range(len(ct_set)):  # the grey DRR and the colour one
        views = ct_set[(index, 7)]
        assert "skipped" not in views, views
        assert views["image_view0"].shape == (1, 16, 64, 64)
        assert views["drr_view0"].shape == views["drr_view1"].shape == (3, 64, 64)
        assert torch.isfinite(views["drr_view0"]).all()
    views = xray_set[(0, 7)]
    assert views["image_view1"].shape == (3, 64, 64)


def test_a_root_that_is_missing_or_a_file_is_named_as_such(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for root, what in ((tmp_path / "absent", "no such folder"), (tmp_path / "afile", "a file, not a folder")):
        code, stdout, stderr = _run(capsys, "--root", str(root), "--out", str(tmp_path / "list.json"))
        assert code != 0 and f"{root}: {what}; pass the official data root" in stdout + stderr
    assert not (tmp_path / "list.json").exists()
