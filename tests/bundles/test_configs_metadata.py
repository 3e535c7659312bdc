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


def test_every_package_the_configs_import_is_required():
    """A downloaded bundle says what to install: each package its configs import or name a class of is in its
    ``required_packages_version`` (the plugin package above all: without it no config of ours parses)."""
    import re

    # names as configs spell them -> distribution names in metadata
    watched = {"unimiss_monai": "unimiss_monai", "ignite": "pytorch-ignite", "nibabel": "nibabel"}
    for bundle, meta in _metadata().items():
        text = "\n".join(p.read_text() for p in sorted((BUNDLES / bundle / "configs").glob("*.json"))
                         if p.name != "metadata.json")
        used = {dist for module, dist in watched.items() if re.search(rf"\b{module}\.", text)}
        missing = used - set(meta.get("required_packages_version") or {})
        assert not missing, f"{bundle}: its configs use {sorted(missing)}, not in required_packages_version"


def test_documented_release_names_carry_the_current_version():
    """A command in the docs that names a release zip or a version names the one ``package-bundle`` writes now."""
    import re

    versions = {bundle: meta["version"] for bundle, meta in _metadata().items()}
    docs = [BUNDLES.parent / "README.md", *sorted(BUNDLES.glob("*/docs/README.md"))]
    for doc in docs:
        text = doc.read_text()
        for bundle, version in re.findall(r"\b(unimiss_[a-z_]+?)_v(\d+\.\d+\.\d+)\.zip", text):
            assert version == versions[bundle], f"{doc}: {bundle}_v{version}.zip, but {bundle} is {versions[bundle]}"
        # a command may wrap: each --version belongs to the nearest --name before it
        flags = re.findall(r"--version\s+(\d+\.\d+\.\d+)", text)
        named = re.findall(r"--name\s+(unimiss_[a-z_]+)\b[^`]*?--version\s+(\d+\.\d+\.\d+)", text)
        assert len(named) == len(flags), f"{doc}: a --version without the --name of its bundle before it"
        for bundle, version in named:
            assert version == versions[bundle], f"{doc}: {bundle} --version {version}, but it is {versions[bundle]}"


def test_the_bundles_require_this_package_version():
    """A downloaded bundle names the package code its configs need: the version this package is, and is installed as
    (the version moves when the configs start to use something new)."""
    from importlib.metadata import version

    import unimiss_monai

    required = {bundle: (meta.get("required_packages_version") or {}).get("unimiss_monai")
                for bundle, meta in _metadata().items()}
    assert set(required.values()) == {unimiss_monai.__version__}, required
    assert version("unimiss_monai") == unimiss_monai.__version__
