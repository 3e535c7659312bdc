"""Whether released weights fit the network their bundle's configs build: checked when a release is packaged, not
after a user downloaded it.

A model trained with an overlay (``smoke.yaml``: tiny widths) packaged against the bundle's default configs would
pass every other check and then fail at its first load. :func:`check_weights_fit` builds ``network_def`` on the CPU
from the configs the release carries (its ``inference.json``, else ``train.json``, with the overlays it was trained
with) and loads the weights into it with the loader the bundles use (:func:`unimiss_monai.networks.load_pretrained`:
position embeddings resized, nothing else forgiven). No forward pass: building and loading take about a second at
full size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BundleNetwork", "DEFAULT_WEIGHTS", "bundle_network", "check_weights_fit", "overlay_files", "weights_path"]

#: where a bundle's configs read its trained weights unless an overlay moves them; fine-tuning bundles read a
#: pretraining release there too. ``networks.weights_file.WEIGHTS_IN_FOLDER`` as a zip names it (POSIX), written out
#: here: importing ``networks`` would build every network class for a command that packages files
DEFAULT_WEIGHTS = "models/model.pt"

_FIX = ("package them with the overlay they were trained with (--overlay smoke.yaml after a smoke training), or pass "
        "weights of this network")


class BundleNetwork:
    """``network_def`` of a bundle as its configs build it: ``net``, the ``parser`` it came from, ``files``, the
    config files read (paths relative to ``bundle_dir``: the main config, then the overlays), and the ``variant``
    set for it (``None``: the configs' own)."""

    def __init__(self, bundle_dir: Path, net: Any, parser: Any, files: list[str], variant: str | None) -> None:
        self.bundle_dir, self.net, self.parser, self.files, self.variant = bundle_dir, net, parser, files, variant

    def describe(self) -> str:
        """``bundles/b/configs/train.json + configs/smoke.yaml at variant mit_tiny (the weights' own)``."""
        files = " + ".join([str(self.bundle_dir / self.files[0]), *self.files[1:]])
        return files + (f" at variant {self.variant} (the weights' own)" if self.variant else "")


def overlay_files(bundle_dir: str | os.PathLike, overlay: str | Sequence[str] | None, carried: Sequence[str]) -> list[str]:
    """The overlays of ``--overlay`` as paths relative to the bundle (``configs/smoke.yaml``), in the order given.

    Each is given as a path, or by its name in the bundle's ``configs/`` (``smoke.yaml``); several as a list or
    separated by commas. An overlay must be one of the files the release carries (``carried``): a user of the
    release can only run it with those.

    Raises:
        ValueError (one line naming the overlay and the fix): no such file among the bundle's configs.
    """
    if overlay is None or overlay == "":
        return []
    items = [overlay] if isinstance(overlay, (str, os.PathLike)) else list(overlay)
    names = [part.strip() for item in items for part in os.fspath(item).split(",") if part.strip()]
    root = Path(bundle_dir).resolve()
    out = []
    for name in names:
        # the bundle's own file first: a smoke.yaml in the working folder is not the one the release carries
        found = next((p for p in (root / "configs" / name, root / name, Path(name)) if p.is_file()), None)
        rel = None
        if found is not None and root in found.resolve().parents:
            rel = found.resolve().relative_to(root).as_posix()
        if rel is None or not rel.startswith("configs/") or rel not in carried:
            raise ValueError(f"package-bundle: --overlay {name} is not a config file of {Path(bundle_dir) / 'configs'}; "
                             "pass one of its overlays (e.g. smoke.yaml): a release carries only its bundle's configs")
        if rel not in out:
            out.append(rel)
    return out


def weights_path(bundle_dir: str | os.PathLike, overlays: Sequence[str] = ()) -> str:
    """Where ``configs/inference.json`` with ``overlays`` on top reads the trained weights, as a POSIX path relative
    to ``bundle_root``: its ``ckpt_path``, else ``<ckpt_dir>/model.pt``, resolved by MONAI's ConfigParser (the
    fine-tuning bundles' ``smoke.yaml`` moves ``ckpt_dir`` to ``models/smoke``, so that a smoke run never replaces
    the full-size model). Without overlays, or without an ``inference.json`` (the pretraining bundle, whose release
    fine-tuning bundles read from ``models/model.pt``), :data:`DEFAULT_WEIGHTS`.

    Raises:
        ValueError (one line naming the configs and the fix): the configs read the weights outside ``bundle_root``.
    """
    from monai.bundle import ConfigParser

    bundle_dir = Path(bundle_dir)
    if not overlays or not (bundle_dir / "configs" / "inference.json").is_file():
        return DEFAULT_WEIGHTS
    files = ["configs/inference.json", *overlays]
    parser = ConfigParser()
    parser.read_config([str(bundle_dir / f) for f in files])
    if "ckpt_path" not in parser and "ckpt_dir" not in parser:
        return DEFAULT_WEIGHTS
    with tempfile.TemporaryDirectory() as tmp:
        # a stand-in bundle_root: the path is wanted relative to wherever the user unpacks the release
        root = os.path.realpath(tmp)
        parser["bundle_root"] = root
        read = (parser.get_parsed_content("ckpt_path") if "ckpt_path" in parser
                else os.path.join(parser.get_parsed_content("ckpt_dir"), "model.pt"))
        read = os.path.normpath(os.fspath(read))
        rel = os.path.relpath(read, root) if os.path.isabs(read) else None
    rel = Path(rel).as_posix() if rel is not None else None
    # download finds a release's weights as models/**/model.pt: a place it would not look is no place to ship them
    if rel is None or not (rel.startswith("models/") and rel.endswith("/model.pt")):
        raise ValueError(f"package-bundle: {' + '.join(files)} of {bundle_dir} read the weights from {read}, not from "
                         "a model.pt under bundle_root/models, so a release cannot ship them there; make the overlay's "
                         "ckpt_dir a folder under @bundle_root/models, or package without it")
    return rel


def bundle_network(bundle_dir: str | os.PathLike, overlays: Sequence[str] = (),
                   overrides: Mapping[str, Any] | None = None) -> BundleNetwork:
    """Build ``network_def`` from the bundle's ``inference.json`` (else ``train.json``) with ``overlays`` (relative to
    the bundle) on top, and ``overrides`` for the config ids the configs define; outputs and data point at a temporary
    folder and no pretrained weights are looked up.

    Raises:
        ValueError (one line): no ``inference.json`` / ``train.json``, or no ``network_def`` in them.
    """
    from monai.bundle import ConfigParser

    bundle_dir = Path(bundle_dir)
    config = next((f"configs/{n}" for n in ("inference.json", "train.json") if (bundle_dir / "configs" / n).is_file()), None)
    if config is None:
        raise ValueError(f"package-bundle: {bundle_dir} has no configs/inference.json or configs/train.json to build its "
                         "network from; add one, or package the bundle without weights")
    files = [config, *overlays]
    parser = ConfigParser()
    parser.read_config([str(bundle_dir / f) for f in files])
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    if "network_def" not in parser:
        raise ValueError(f"package-bundle: {' + '.join(files)} of {bundle_dir} define no network_def, so no weights can "
                         "be used by this bundle; package it without weights")
    given = {k: v for k, v in (overrides or {}).items() if k in parser}
    with tempfile.TemporaryDirectory() as tmp:
        parser.update({"bundle_root": tmp, "dataset_dir": tmp, "output_dir": tmp, "pretrained_path": None, **given})
        net = parser.get_parsed_content("network_def")
    return BundleNetwork(bundle_dir, net, parser, files, given.get("variant"))


def _weights_module(net: Any) -> Any:
    """The module the bundle's weights are the tensors of: a pretraining network ships its ``export()`` (the
    ``StudentTeacher`` its teacher backbone), found by its tensor names; any other network ships itself."""
    export = getattr(net, "export", None)
    if not callable(export):
        return net
    names = set(export()["model"])
    return next((m for m in net.modules() if set(m.state_dict()) == names), net)


def check_weights_fit(bundle: BundleNetwork, payload: Mapping[str, Any], weights: str) -> Any:
    """Load ``payload`` (``{"model", "info"}``, as a user's ``torch.load`` returns it) into the bundle's network and
    return the module loaded; refuse weights that leave a tensor of it untrained, hold tensors it has not, or that
    record other classes (``info["classes"]``, or the same in another order) or input settings (``info["settings"]``)
    than the configs' ``load_model#classes`` and ``model_settings``.

    Raises:
        ValueError (one line naming ``weights``, the configs and the fix).
    """
    from unimiss_monai.handlers.checkpoint_info import settings_mismatch
    from unimiss_monai.handlers.pretrained_init import class_name_list, classes_mismatch
    from unimiss_monai.networks.pretrained import load_pretrained

    target = _weights_module(bundle.net)
    reason = None
    try:
        # allow_partial: every shortfall is counted below and refused in this one line, not the loader's own
        report = load_pretrained(target, payload, allow_partial=True)
    except ValueError as err:
        # the loader's advice after "; " is for a run that builds a network (another variant or widths); here the
        # configs are fixed, and the fix is the overlay
        reason = str(err).splitlines()[0].split("; ")[0]
    else:
        # the report lists a tensor of another shape as missing too; tensors of a dimension the pretraining never
        # trained are set aside on purpose (fine-tuning inflates them)
        counted = {m.split(" ", 1)[0] for m in report.mismatched} | set(report.set_aside)
        missing = [k for k in report.missing if k not in counted]
        if missing or report.unexpected or report.mismatched:
            first = (report.mismatched or missing or report.unexpected)[0]
            reason = (f"{len(missing)} missing, {len(report.unexpected)} unexpected, {len(report.mismatched)} of "
                      f"another shape, e.g. {first}")
    info = payload.get("info") or {}
    classes = bundle.parser.get_parsed_content("load_model#classes", default=None)
    if reason is None and (how := classes_mismatch(info.get("classes"), classes)):
        # the weights fit, yet evaluation and inference refuse a model whose outputs their names would mislabel
        reason = f"they were trained for {how} ({info['classes']}) where these configs name {class_name_list(classes)}"
    recorded = info.get("settings")
    if reason is None and recorded and "model_settings" in bundle.parser:
        # the weights fit, yet evaluation and inference refuse inputs prepared otherwise than they were trained on
        diffs = settings_mismatch(recorded, bundle.parser.get_parsed_content("model_settings"))
        reason = f"they were trained with other input settings: {diffs.replace('this run', 'these configs')}" if diffs else None
    if reason is not None:
        raise ValueError(f"package-bundle: {weights} do not fit network_def of {bundle.describe()}: {reason}; {_FIX}")
    return target
