"""The sample-data folder a report is given (``--samples``): the ``--out`` of ``python -m unimiss_monai samples``,
known by its manifest (:data:`~unimiss_monai.data.samples.MANIFEST` with a ``datasets`` object), as a bundle's
``--dataset_dir`` knows it (:func:`~unimiss_monai.data.samples.find_dataset`). Any other folder is refused: the page
would describe the demo's data (a real CT, its DRRs, simulated findings) for runs that never read them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from unimiss_monai.data.samples import MANIFEST

__all__ = ["checked_samples"]


def checked_samples(samples: str | os.PathLike) -> Path:
    """``samples`` as a path, once it is known to be a samples output; else one line naming it and the fix
    (``FileNotFoundError`` when it does not exist, ``ValueError`` otherwise)."""
    path = Path(samples)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--samples {str(path)!r} is a file, not a folder; pass the samples folder the run used "
                         "(the --out of `python -m unimiss_monai samples`)")
    if not path.is_dir():
        raise FileNotFoundError(f"samples folder {str(path)!r} does not exist; pass the --samples the run "
                                "used")
    manifest = path / MANIFEST
    if not manifest.is_file():
        problem = f"it holds no {MANIFEST}"
    else:
        try:
            datasets = json.loads(manifest.read_text()).get("datasets")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):  # not JSON, or not a JSON object
            datasets = None
        problem = None if isinstance(datasets, dict) else f"its {MANIFEST} is not a samples manifest"
    if problem:
        raise ValueError(f"--samples {str(path)!r} is not a samples folder ({problem}; `python -m unimiss_monai "
                         "samples --out FOLDER` writes one); pass the folder the run's samples step wrote, or leave "
                         "--samples out for runs on your own data")
    return path
