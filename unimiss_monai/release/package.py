"""``package-bundle``: a bundle folder (and optionally its weights) as a model-zoo style release.

For ``bundles/<name>`` at the ``version`` of its ``configs/metadata.json`` this writes into ``--out``:

- ``<name>_v<version>.zip``: one folder ``<name>/`` with ``configs/``, ``docs/``, ``LICENSE`` and, with weights,
  ``models/model.pt`` = ``{"model": state_dict, "info": {...}}`` (plain tensors, loadable with
  ``torch.load(..., weights_only=True)``; with ``--overlay``, where the configs with those overlays read it, e.g.
  ``models/smoke/model.pt``: :func:`.network_fit.weights_path`) and, given ``--base_url``, ``large_files.yml``;
  reproducible: the same inputs give the same bytes;
- ``<name>_v<version>.zip.sha256`` (``sha256sum -c`` format);
- ``model_info.json``: the release index, with this release's entry added (see :mod:`.index`);
- with weights, ``<name>_v<version>_model.pt`` (the same bytes as in the zip) and ``<name>_v<version>_large_files.yml``
  (``path``, ``url``, ``hash_val``, ``hash_type``), for a repository that keeps the weights out of git and fetches
  them with ``python -m monai.bundle download_large_files``.

A released version is immutable: an existing zip, weights file, ``.sha256`` or ``_large_files.yml`` of the same name
with other bytes is only replaced with ``--overwrite``; the same bytes are left as they are ("unchanged").
"""

from __future__ import annotations

import io
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unimiss_monai.data.writers import save_bytes
from unimiss_monai.release.archive import sha256_bytes, sha256_file, torch_bytes, zip_bytes
from unimiss_monai.release.index import (
    ReleaseIndexError, check_name, check_version, entry_key, load_index, update_index,
)
from unimiss_monai.release.network_fit import (
    BundleNetwork, bundle_network, check_weights_fit, overlay_files, weights_path,
)
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.json_files import read_json_object
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["build_release", "bundle_version", "package_bundle", "release_files", "weights_payload"]

REQUIRED = ("configs/metadata.json", "LICENSE", "docs/README.md")
_SKIP_SUFFIXES = (".prev", ".pyc", ".tmp")


def bundle_version(bundle_dir: str | os.PathLike) -> tuple[str, dict]:
    """``(version, metadata)`` of a bundle; the version must be a plain version and have a changelog entry.

    Raises:
        ValueError (one line naming the file and the fix).
    """
    meta_path = Path(bundle_dir) / "configs" / "metadata.json"
    if not meta_path.is_file():
        raise ValueError(f"{meta_path} does not exist; pass a bundle folder (bundles/<name>)")
    meta = read_json_object(meta_path, fix="fix it, or restore it from the release")
    version = meta.get("version")
    if not version:
        raise ValueError(f"{meta_path} has no 'version'; add one (e.g. \"0.1.0\") with a changelog entry")
    version = check_version(version, f"{meta_path} version")
    if version not in (meta.get("changelog") or {}):
        raise ValueError(f"{meta_path}: version {version} is not in its changelog; add a changelog entry for {version}")
    return version, meta


def release_files(bundle_dir: str | os.PathLike) -> list[str]:
    """The bundle's files that a release carries, as sorted POSIX paths relative to the bundle: ``LICENSE`` and every
    file under ``configs/`` and ``docs/`` (hidden files, ``*.prev`` and caches excluded; weights come separately).

    Raises:
        ValueError: a required file (``configs/metadata.json``, ``LICENSE``, ``docs/README.md``) is missing, or a file
            or folder the release would carry is a symbolic link (its target, possibly outside the bundle, would be
            published: the reader refuses links for the same reason).
    """
    root = Path(bundle_dir)
    missing = [r for r in REQUIRED if not (root / r).is_file()]
    if missing:
        raise ValueError(f"bundle {root} lacks {', '.join(missing)}; a model-zoo bundle needs {', '.join(REQUIRED)}")
    out = ["LICENSE"]
    candidates = [root / "LICENSE", root / "configs", root / "docs"]
    for sub in ("configs", "docs"):
        candidates += sorted((root / sub).rglob("*"))
    for p in candidates:
        rel = p.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or p.name.endswith(_SKIP_SUFFIXES):
            continue
        if p.is_symlink():
            raise ValueError(f"bundle {root}: {rel.as_posix()} is a symbolic link (to {os.readlink(p)}); a release "
                             "carries regular files only: copy the file into the bundle or remove the link")
        if p.is_file() and rel.parts[0] in ("configs", "docs"):
            out.append(rel.as_posix())
    return sorted(out)


def weights_payload(path: str | os.PathLike, extra_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"model": state_dict, "info": {...}}`` from a weights file, read with ``weights_only=True``.

    Accepts this package's exports (``{"model", "info"}``), a converted official checkpoint (``{"model", "variant"}``)
    or a bare state dict. Tensors are copied to compact CPU storage (a view would otherwise save its whole base
    storage) so the bytes depend only on the values. ``extra_info`` is merged into ``info``.

    Raises:
        ValueError (one line naming the file): missing file, no tensors, NaN/Inf tensors.
    """
    import torch

    from unimiss_monai.networks.weights_file import is_fine_tune_checkpoint, recorded_info

    path = Path(path)
    _require_weights_file(path)
    obj = load_torch_file(path, "package-bundle: weights")
    if not isinstance(obj, Mapping):
        raise ValueError(f"weights {path} hold a {type(obj).__name__}, not a state dict or {{'model': ...}}")
    info = recorded_info(obj)
    state = obj["model"] if isinstance(obj.get("model"), Mapping) else obj
    tensors = {str(k): v.detach().cpu().contiguous().clone() for k, v in state.items() if torch.is_tensor(v)}
    if not tensors and is_fine_tune_checkpoint(obj):
        raise ValueError(f"weights {path} are a fine-tuning run's resume checkpoint, not a model to release; package "
                         "the models/model.pt the finished run published")
    if not tensors:
        raise ValueError(f"weights {path} hold no tensors under 'model' (keys {sorted(map(str, obj))[:6]})")
    bad = first_non_finite(tensors)
    if bad is not None:
        raise ValueError(f"weights {path}: tensor {bad} holds NaN or Inf; package an earlier checkpoint")
    info.update(extra_info or {})
    return {"model": tensors, "info": info}


def _torchscript(bundle_dir: Path, meta: dict, bundle: BundleNetwork) -> bytes:
    """The bundle's ``network_def`` (``bundle.net``, already holding the packaged weights) traced at the input shape of
    ``network_data_format`` (scripting does not support these networks; tracing does) and saved as ``monai.bundle
    ckpt_export`` saves it: with the bundle's metadata and the configs beside the network.

    The network is built once: the instance checked against the weights is the one traced (``ckpt_export`` would
    build a second one from the config, and a UniMiSS network is large).

    Raises:
        ValueError (one line naming the config): no input shape, or a network that ships its export (pretraining).
    """
    import torch
    from monai.bundle import ConfigParser
    from monai.data import save_net_with_metadata
    from monai.networks import convert_to_torchscript

    fmt = meta.get("network_data_format", {}).get("inputs", {}).get("image", {})
    shape = [1, int(fmt.get("num_channels", 1)), *(int(s) for s in fmt.get("spatial_shape", []))]
    if len(shape) < 4:
        raise ValueError(f"--torchscript: {bundle_dir} has no network_data_format input shape in configs/metadata.json")
    if callable(getattr(bundle.net, "export", None)):
        raise ValueError(f"package-bundle --torchscript: network_def of {bundle.describe()} is a "
                         f"{type(bundle.net).__name__}, whose weights are its export and which has no forward of its "
                         "own to trace; package without --torchscript")
    traced = convert_to_torchscript(bundle.net, use_trace=True, inputs=[torch.rand(shape)])
    # the extra files of ckpt_export: the metadata, and each config as JSON under its own name
    configs = {f"{Path(f).stem}.json": json.dumps(ConfigParser.load_config_file(str(bundle_dir / f))).encode()
               for f in bundle.files}
    buffer = io.BytesIO()
    save_net_with_metadata(traced, buffer, include_config_vals=False, append_timestamp=False,
                           meta_values=bundle.parser.get().get("_meta_"), more_extra_files=configs)
    return buffer.getvalue()


def _write_state(path: Path, data: bytes, overwrite: bool) -> str:
    """``"unchanged"`` when ``path`` holds ``data``, else ``"written"``; another file at ``path`` is refused unless
    ``overwrite``. Nothing is written: every file of a release is checked before the first one is."""
    if path.exists():
        if sha256_file(path) == sha256_bytes(data):
            return "unchanged"
        if not overwrite:
            raise ValueError(f"{path} exists with other content: a released version never changes, so bump the version "
                             "in metadata.json (with a changelog entry) or pass --overwrite true")
    return "written"


def package_bundle(
    bundle: str,
    weights: str | None = None,
    out: str = "dist",
    base_url: str | None = None,
    training: str | None = None,
    name: str | None = None,
    torchscript: bool = False,
    overwrite: bool = False,
    overlay: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Command ``package-bundle``: write the model-zoo style release of ``bundle`` into ``out``.

    Weights are checked against the network the bundle's configs build before anything is written (see
    :mod:`.network_fit`): a model trained with an overlay (``smoke.yaml``) is packaged with ``--overlay smoke.yaml``,
    which the release then records (``info["overlays"]``) for its users.

    Args:
        bundle: the bundle folder, e.g. ``bundles/unimiss_pretraining``.
        weights: a ``model.pt`` to ship as ``models/model.pt``, with ``overlay`` where those configs read it (a
            pretraining export, a fine-tuned model or a converted official checkpoint); by default the bundle's own
            ``models/model.pt`` when present, else a release without weights.
        out: output folder (created).
        base_url: where the files will be published (e.g. a GitHub release's download URL); index and
            ``large_files.yml`` sources become absolute. Without it, sources are relative to the index.
        training: how the weights were trained and what they are for, stored as ``info["training"]``; required when
            the weights do not say it already.
        name: release name (the folder inside the zip); default the bundle folder's name.
        torchscript: also ship ``model.ts`` beside the weights (the bundle's ``network_def`` traced with them).
        overwrite: replace existing release files of the same version (zip, weights, ``.sha256``,
            ``_large_files.yml``) whose bytes differ.
        overlay: the overlay(s) of the bundle's ``configs/`` the weights were trained with (``smoke.yaml``; several as
            a list or separated by commas), stacked on ``inference.json`` (else ``train.json``) for the check.

    Returns:
        ``{"zip", "sha256", "size", "version", "index", "large_files"}``.
    """
    bundle_dir = Path(bundle)
    bundle_version(bundle_dir)  # a missing version or changelog entry stops before the weights are read
    if weights is None and (bundle_dir / "models" / "model.pt").is_file():
        weights = str(bundle_dir / "models" / "model.pt")
    payload = None
    if weights is not None:
        _require_weights_file(weights)  # hashed below: a folder or a missing path would stop with a traceback
        extra = {"weights_sha256": sha256_file(weights)}
        if training:
            extra["training"] = str(training)
        payload = weights_payload(weights, extra)
        if not payload["info"].get("training"):
            raise ValueError(f"package-bundle: {weights} does not say how it was trained; pass --training '<data, recipe, "
                             "epochs; what the weights are (not) good for>'")
    return build_release(bundle_dir, payload, out, base_url=base_url, name=name, torchscript=torchscript,
                         overwrite=overwrite, overlays=overlay, source=f"the weights {weights}")


def build_release(
    bundle_dir: str | os.PathLike,
    payload: dict[str, Any] | None,
    out: str | os.PathLike,
    base_url: str | None = None,
    name: str | None = None,
    torchscript: bool | str = False,
    overwrite: bool | str = False,
    overlays: str | Sequence[str] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Write the release files of ``bundle_dir`` with ``payload`` (``{"model", "info"}`` or ``None``) as
    ``models/model.pt`` (with ``overlays``: where the configs with them read it) into ``out``; see
    :func:`package_bundle`.

    ``overlays`` are the bundle's overlays the weights were trained with; ``source`` names the weights in messages
    (default ``the weights for <name> v<version>``). The network the configs build is that of the variant the
    weights record (``info["variant"]``, a run option the download prints), e.g. ``mit_tiny`` for converted UniMiSS
    weights in the pretraining bundle.

    Raises:
        ValueError (one line), before anything is written: weights holding NaN or Inf, weights whose
            ``info["bundle"]`` names another bundle than the one packaged (its folder's name or ``name``): they
            would ship under this bundle's name and configs, e.g. a fine-tuned segmentation model as pretraining
            weights; or weights that do not load into the network of the configs with ``overlays``
            (:func:`.network_fit.check_weights_fit`).
    """
    from unimiss_monai.utils.args import as_bool

    torchscript, overwrite = as_bool(torchscript, "torchscript"), as_bool(overwrite, "overwrite")
    if base_url is not None:  # written into the index and large_files.yml: a bad one would fail only at download
        parts = urllib.parse.urlsplit(str(base_url))
        if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
            raise ValueError(f"package-bundle: --base_url {base_url!r} is not an http(s):// or file:// address; give "
                             "where the files will be published, e.g. https://github.com/OWNER/REPO/releases/download/TAG")
    bundle_dir = Path(bundle_dir)
    name = check_name(name or bundle_dir.resolve().name)
    other = bundle_dir.resolve().parent / name
    if (name != bundle_dir.resolve().name and (other / "configs" / "metadata.json").is_file()
            and other.resolve() != bundle_dir.resolve()):  # a link to the packaged bundle is that bundle
        # its configs and weights would download as that bundle, and load wherever that bundle's weights are asked for
        raise ValueError(f"package-bundle: --name {name} is the name of the bundle {other}; a release of "
                         f"{bundle_dir.resolve().name} must not ship under it: package {other} for that name, or give "
                         "--name a name of its own")
    version, meta = bundle_version(bundle_dir)
    carried = release_files(bundle_dir)
    overlays = overlay_files(bundle_dir, overlays, carried)
    entries = [(f"{name}/{rel}", (bundle_dir / rel).read_bytes()) for rel in carried]
    model_pt = None
    # a user runs the release with the overlays it names: its weights go where those configs read them
    # (smoke.yaml: models/smoke), else the run stops on "no trained model"; without overlays, models/model.pt
    shipped_at = weights_path(bundle_dir, overlays) if payload is not None else None
    if payload is not None:
        source = source or f"the weights for {name} v{version}"
        bad = first_non_finite(payload["model"])
        if bad is not None:
            raise ValueError(f"package-bundle: {source}: tensor {bad} holds NaN or Inf; package an earlier checkpoint")
        owner = payload["info"].get("bundle")
        if owner is not None and owner not in (name, bundle_dir.resolve().name):
            raise ValueError(f"package-bundle: the weights are a model of bundle {owner!r} (their info.bundle), not of "
                             f"{name!r}; package them with their own bundle (bundles/{owner}), or pass weights of {name}")
        # an earlier release's say (its overlays and where it shipped the weights) no longer holds
        info = {k: v for k, v in payload["info"].items() if k not in ("overlays", "weights_path")}
        payload = {**payload, "info": {**info, "bundle": name, "bundle_version": version,
                                       **({"overlays": overlays, "weights_path": shipped_at} if overlays else {})}}
        model_pt = torch_bytes(payload)
        import torch

        from unimiss_monai.networks.variants import VARIANTS

        shipped = torch.load(io.BytesIO(model_pt), weights_only=True)  # what a user's load will do, checked before release
        variant = shipped["info"].get("variant")
        recorded = {"variant": variant} if isinstance(variant, str) and variant in VARIANTS else None
        bundle = bundle_network(bundle_dir, overlays, recorded)
        check_weights_fit(bundle, shipped, source)  # loads them into bundle.net, which --torchscript then traces
        entries.append((f"{name}/{shipped_at}", model_pt))
        if torchscript:  # beside the weights: a trace of the smoke network is no full-size models/model.ts
            traced_at = f"{name}/{shipped_at.rsplit('/', 1)[0]}/model.ts"
            entries.append((traced_at, _torchscript(bundle_dir, meta, bundle)))
    elif torchscript or overlays:
        raise ValueError(f"package-bundle: --{'torchscript' if torchscript else 'overlay'} needs weights (--weights)")
    out_dir = Path(out)
    key = entry_key(name, version)
    zip_path, weights_file = out_dir / f"{key}.zip", out_dir / f"{key}_model.pt"
    prefix = base_url.rstrip("/") + "/" if base_url else ""
    large_yml = None
    if model_pt is not None:
        import yaml

        large_yml = yaml.safe_dump({"large_files": [{"path": shipped_at, "url": prefix + weights_file.name,
                                                     "hash_val": sha256_bytes(model_pt), "hash_type": "sha256"}]},
                                   sort_keys=False)
        if base_url:  # as a model-zoo bundle carries it: download_large_files fetches the weights again from the zip
            entries.append((f"{name}/large_files.yml", large_yml.encode()))
    zip_data = zip_bytes(entries)
    digest, size = sha256_bytes(zip_data), len(zip_data)
    sha_path, sha_data = zip_path.with_name(zip_path.name + ".sha256"), f"{digest}  {zip_path.name}\n".encode()
    large = out_dir / f"{key}_large_files.yml" if large_yml is not None else None
    # every refusal comes before anything is written, so a refused release leaves the folder as it was; the checksum
    # and large_files.yml are checked as the zip is: a user's file under their names was silently replaced
    state = _write_state(zip_path, zip_data, overwrite)
    weights_state = _write_state(weights_file, model_pt, overwrite) if model_pt is not None else None
    large_state = _write_state(large, large_yml.encode(), overwrite) if large is not None else None
    sha_state = _write_state(sha_path, sha_data, overwrite)
    if (out_dir / "model_info.json").exists():
        _check_out_index(out_dir / "model_info.json")  # a file there that is no index is refused now, not after the zip
    if weights_state == "written":
        save_bytes(model_pt, weights_file)
    if large_state == "written":
        save_bytes(large_yml, large)
    if state == "written":
        save_bytes(zip_data, zip_path)
    if sha_state == "written":
        save_bytes(sha_data, sha_path)
    # the index last: it never names a zip that is not in place
    entry = update_index(out_dir / "model_info.json", name, version, prefix + zip_path.name, digest, size)
    print(f"package-bundle: {name} v{version} -> {zip_path} ({state}; {size} bytes, sha256 {digest}); "
          f"weights: {shipped_at if model_pt else 'none (configs only)'}; index {out_dir / 'model_info.json'} "
          f"source {entry['source']}", flush=True)
    if large is not None and not base_url:
        print(f"package-bundle: {large.name} names {weights_file.name} by a relative URL; pass --base_url with the "
              "address the files will be published at for monai.bundle download_large_files", flush=True)
    return {"zip": str(zip_path), "sha256": digest, "size": size, "version": version, "name": name,
            "index": str(out_dir / "model_info.json"), "large_files": str(large) if large else None}


def _check_out_index(index: Path) -> None:
    """Refuse (one line) a ``model_info.json`` in ``--out`` that is no release index. The user passed no index, so the
    reader's own advice (pass a model_info.json) does not apply: the file is theirs, left untouched, and the fix is to
    move it or write the release elsewhere."""
    try:
        load_index(str(index))
    except (ReleaseIndexError, OSError) as err:
        reason = str(err).removeprefix(f"index {index} ").split("; pass ")[0]
        raise ValueError(f"package-bundle: {index} is no release index ({reason}), and the release's entry would be "
                         "added to it; move that file away or choose another --out (it was left untouched)") from None


def _require_weights_file(path: str | os.PathLike) -> None:
    """ValueError in one line when ``path`` is no weights file: a folder (said as one, with the file in it to pass)
    or nothing at all."""
    if Path(path).is_dir():
        inside = next((p for p in (Path(path) / "model.pt", Path(path) / "models" / "model.pt") if p.is_file()), None)
        raise ValueError(f"weights {path} is a folder, not a file; pass the models/model.pt of a finished run"
                         + (f" (here: --weights {inside})" if inside else ""))
    if not Path(path).is_file():
        raise ValueError(f"weights {path} do not exist; pass the models/model.pt of a finished run")
