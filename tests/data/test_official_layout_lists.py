"""``official-datalist`` on list files and CT folders a user hands over as they are: a list file saved in another
encoding, a list that repeats a line, and two CT files of one name that would share one DRR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unimiss_monai.cli import main
from unimiss_monai.data.writers import save_nifti, save_png


def _root(root: Path) -> Path:
    """One CT sub-volume with its DRR and one X-ray, in the reference layout, without list files."""
    save_nifti(np.zeros((8, 8, 4), np.int16), np.eye(4), root / "3D_subvolumes" / "a.nii.gz")
    save_png(np.zeros((8, 8), np.uint8), root / "3D_subvolumes" / "a.png")
    save_png(np.zeros((8, 8), np.uint8), root / "2D_images" / "x.png")
    return root


def _run(capsys, root: Path, out: Path) -> tuple[int, str, str]:
    """The command in process: (exit code, stdout, stderr), an error as the command line prints it (its message)."""
    code, message = 0, ""
    try:
        main(["official-datalist", "--root", str(root), "--out", str(out)])
    except SystemExit as e:
        code, message = (e.code, "") if isinstance(e.code, int) else (1, str(e.code))
    except (ValueError, OSError) as e:
        code, message = 1, str(e)
    captured = capsys.readouterr()
    return code, captured.out, captured.err + message


def test_a_list_file_that_is_not_utf8_is_named_with_the_fix(tmp_path, capsys):
    root = _root(tmp_path / "data")
    (root / "2D_images.txt").write_bytes(b"\xff\xfe2D_images/x.png\n")
    code, _, stderr = _run(capsys, root, tmp_path / "d.json")
    assert code != 0 and not (tmp_path / "d.json").exists()
    message = stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"{root / '2D_images.txt'}: not UTF-8 text" in message and "save it as UTF-8 text" in message
    assert "codec can't decode" not in message


def test_a_list_file_with_a_byte_order_mark_is_read(tmp_path, capsys):
    root = _root(tmp_path / "data")
    (root / "2D_images.txt").write_bytes("2D_images/x.png\n".encode("utf-8-sig"))
    code, _, stderr = _run(capsys, root, tmp_path / "d.json")
    assert code == 0 and stderr == "", stderr
    assert json.loads((tmp_path / "d.json").read_text())["xray"] == [{"image": "data/2D_images/x.png"}]


def test_a_repeated_list_line_is_listed_once_and_said(tmp_path, capsys):
    root = _root(tmp_path / "data")
    (root / "2D_images.txt").write_text("2D_images/x.png\n\n./2D_images/x.png 0\n")
    (root / "3D_images.txt").write_text("3D_subvolumes/a.nii.gz\n3D_subvolumes/a.png\n3D_subvolumes/a.nii.gz\n")
    code, stdout, stderr = _run(capsys, root, tmp_path / "d.json")
    assert code == 0, stderr
    written = json.loads((tmp_path / "d.json").read_text())
    assert written == {"ct": [{"image": "data/3D_subvolumes/a.nii.gz", "drr": "data/3D_subvolumes/a.png"}],
                       "xray": [{"image": "data/2D_images/x.png"}]}
    lines = stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert f"{root / '2D_images.txt'}: line 3 (./2D_images/x.png) repeats line 1; listed once" in lines[1]
    assert f"{root / '3D_images.txt'}: line 3 (3D_subvolumes/a.nii.gz) repeats line 1; listed once" in lines[0]
    assert "1 CT (1 with DRR) and 1 X-ray entries" in stdout


def test_two_ct_files_of_one_name_are_both_left_out_in_one_line(tmp_path, capsys):
    root = _root(tmp_path / "data")
    save_nifti(np.zeros((8, 8, 4), np.int16), np.eye(4), root / "3D_subvolumes" / "a.nii")
    save_nifti(np.zeros((8, 8, 4), np.int16), np.eye(4), root / "3D_subvolumes" / "b.nii.gz")
    save_png(np.zeros((8, 8), np.uint8), root / "3D_subvolumes" / "b.png")
    code, stdout, stderr = _run(capsys, root, tmp_path / "d.json")
    assert code == 0, stderr
    # which of the two the DRR a.png was rendered from is unknown: neither is paired with it
    assert [e["image"] for e in json.loads((tmp_path / "d.json").read_text())["ct"]] == ["data/3D_subvolumes/b.nii.gz"]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(root / "3D_subvolumes" / "a.nii") in lines[0] and str(root / "3D_subvolumes" / "a.nii.gz") in lines[0]
    assert "same case name 'a'" in lines[0] and "rename" in lines[0]
    assert "1 CT (1 with DRR)" in stdout

    # one of the two listed but absent leaves the other unambiguous
    (root / "3D_subvolumes" / "a.nii").unlink()
    (root / "3D_images.txt").write_text("3D_subvolumes/a.nii\n3D_subvolumes/a.nii.gz\n3D_subvolumes/b.nii.gz\n")
    code, stdout, stderr = _run(capsys, root, tmp_path / "e.json")
    assert code == 0 and len(json.loads((tmp_path / "e.json").read_text())["ct"]) == 2, stderr
    assert "a.nii: listed in 3D_images.txt but missing" in stderr and "same case name" not in stderr
