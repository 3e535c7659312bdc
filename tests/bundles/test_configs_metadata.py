"""The bundles' metadata.json files agree with each other where they describe the same thing."""

from __future__ import annotations

import json
from pathlib import Path

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def _metadata() -> dict[str, dict]:
    return {p.parent.parent.name: json.loads(p.read_text()) for p in sorted(BUNDLES.glob("*/configs/metadata.json"))}


def test_one_version_per_package():
    """Every bundle is tested in one environment: a package several bundles require has one version in all of them."""
    seen: dict[str, dict[str, str]] = {}
    for bundle, meta in _metadata().items():
        for key in ("monai_version", "pytorch_version", "numpy_version"):
            seen.setdefault(key, {})[bundle] = meta.get(key)
        for package, version in (meta.get("required_packages_version") or {}).items():
            seen.setdefault(package, {})[bundle] = version
    differing = {package: by_bundle for package, by_bundle in seen.items() if len(set(by_bundle.values())) > 1}
    assert not differing, f"packages pinned at different versions: {differing}"
