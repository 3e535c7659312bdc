"""``official-datalist``: files of the data root that cannot be read (empty, cut short, another format under the
suffix) are named one line each with the fix and left out of the datalist; the readable ones are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unimiss_monai.cli import main
from unimiss_monai.data.writers import save_nifti, save_png


def _root(root: Path) -> Path:
    """Sub-volumes each with a PNG DRR, two X-rays; then one empty CT, one CT cut short (300 bytes), one DRR that is
    a text file and one empty X-ray. No list files: the folders are searched, as for a root without them."""
    rng = np.random.default_rng(0)
    sub = root / "3D_subvolumes"
    for name in ("good_dep0", "trunc_dep0", "txtdrr_dep0", "empty_dep0"):
        save_nifti(rng.uniform(-1000, 800, (40, 40, 24)).astype(np.int16), np.diag([6.0, 6.0, 6.0, 1.0]),
                   sub / f"{name}.nii.gz")
        save_png(rng.integers(0, 255, (48, 40), dtype=np.uint8), sub / f"{name}.png")
    for name in ("x1", "x2"):
        save_png(rng.integers(0, 255, (64, 56), dtype=np.uint8), root / "2D_images" / f"{name}.png")
    (sub / "empty_dep0.nii.gz").write_bytes(b"")
    trunc = sub / "trunc_dep0.nii.gz"
    trunc.write_bytes(trunc.read_bytes()[:300])
    (sub / "txtdrr_dep0.png").write_text("rendering failed\n")
    (root / "2D_images" / "x2.png").write_bytes(b"")
    return root


def test_unreadable_files_are_named_and_left_out(tmp_path, capsys):
    root = _root(tmp_path / "off root")
    out = root / "dl.json"
    main(["official-datalist", str(root), str(out)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    sub = root / "3D_subvolumes"
    for bad, said in ((sub / "empty_dep0.nii.gz", "empty (0 bytes)"), (sub / "trunc_dep0.nii.gz", ""),
                      (sub / "txtdrr_dep0.png", "not a readable PNG image"),
                      (root / "2D_images" / "x2.png", "empty (0 bytes)")):
        (line,) = [x for x in lines if f": {bad}: " in x]
        assert said in line and "copy or render it again, or remove it" in line, line
    assert len(lines) == 4, lines
    datalist = json.loads(out.read_text())
    assert datalist == {"ct": [{"image": "3D_subvolumes/good_dep0.nii.gz", "drr": "3D_subvolumes/good_dep0.png"}],
                        "xray": [{"image": "2D_images/x1.png"}]}
    assert "1 CT (1 with DRR) and 1 X-ray entries" in captured.out


def test_without_require_drr_a_ct_with_an_unreadable_drr_is_listed_without_it(tmp_path, capsys):
    root = _root(tmp_path / "data")
    main(["official-datalist", str(root), str(root / "dl.json"), "--require_drr", "False"])
    err = capsys.readouterr().err
    assert "txtdrr_dep0.png: not a readable PNG image" in err and "its CT listed without it" in err
    ct = json.loads((root / "dl.json").read_text())["ct"]
    assert {"image": "3D_subvolumes/txtdrr_dep0.nii.gz"} in ct and all("txtdrr_dep0.png" not in str(e) for e in ct)


def test_nothing_readable_exits_non_zero_with_nothing_written(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "2D_images").mkdir(parents=True)
    (root / "2D_images" / "x.png").write_bytes(b"")
    with pytest.raises(SystemExit) as caught:
        main(["official-datalist", str(root), str(root / "dl.json")])
    assert "no usable CT or X-ray" in str(caught.value.code) and not (root / "dl.json").exists()
    assert f"{root / '2D_images' / 'x.png'}: empty (0 bytes)" in capsys.readouterr().err


def test_help_lists_require_drr_as_its_own_flag(capsys):
    with pytest.raises(SystemExit):
        main(["official-datalist", "--help"])
    shown = capsys.readouterr()
    text = shown.out + shown.err
    block = text[text.index("--list_3d"):text.index("--list_2d")]
    assert "require_drr" not in block
    assert "leave out a CT without a readable" in text[text.index("--require_drr"):]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("kind", ["Nifti1Image", "Nifti2Image"])
def test_a_readable_nifti_with_a_header_extension_is_listed_and_one_cut_short_is_not(tmp_path, suffix, kind):
    """A header extension (converters and AFNI write them) moves the voxels back; the file is whole, and listed. The
    same file missing its last bytes is cut short."""
    import nibabel as nib

    from unimiss_monai.data.official_layout import _unusable

    image = getattr(nib, kind)(np.zeros((10, 12, 8), np.int16), np.eye(4))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"x" * 2000))
    path = tmp_path / f"ext{suffix}"
    nib.save(image, path)
    assert _unusable(path) is None
    if suffix == ".nii":
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(path.read_bytes()[:-50])
        assert _unusable(cut).startswith("cut short (")
