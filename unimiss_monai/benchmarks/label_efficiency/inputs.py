"""The label-efficiency study's inputs checked before any work: a study runs for hours, so a folder option that is a
file, an --out that holds another bundle's study, or a weights file that cannot initialise the study's network, is
refused in one line up front instead of failing inside MONAI (a traceback), in every pretrained run (recorded only in
the JSON), or replacing the other study's results and runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from unimiss_monai.utils.paths import file_in_the_way

__all__ = ["check_folders", "check_study_bundle", "check_weights", "study_variant"]


def check_folders(folders: Mapping[str, str | None]) -> None:
    """Refuse (``FileExistsError``) an option of ``folders`` (name -> value as given) whose path is, or lies under,
    a file: worded as the command line's own refusal of a file where a folder has to be."""
    for name, value in folders.items():
        if not value:
            continue
        blocker = file_in_the_way(Path(value).expanduser().absolute())
        if blocker is not None:
            where = "" if Path(value).expanduser().absolute() == blocker else f": {blocker}"
            raise FileExistsError(f"label-efficiency: --{name} {value}{where} is a file, not a folder; move that file "
                                  f"away or choose another --{name}")


def _bundle_in(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("bundle") if isinstance(data, dict) and isinstance(data.get("bundle"), str) else None


def check_study_bundle(out: str | Path, bundle: str) -> None:
    """Refuse (``FileExistsError``, one line) an ``out`` that holds the study of another bundle: its results
    (``label_efficiency.json``) or a run's settings (``runs/<run>/run_settings.json``) name that bundle. Run folders
    are named by arm, fraction and seed only, so a second bundle's study in the same folder would train over the
    first one's runs and replace its results. Runs left without results by an earlier version name no bundle:
    they are not recognised, and a changed run is trained again as before."""
    from unimiss_monai.benchmarks.label_efficiency.study import MARKER

    out = Path(out).expanduser()
    found = [(path, _bundle_in(path)) for path in
             [out / "label_efficiency.json", *(out / "runs" / r / MARKER for r in _run_names(out))]]
    for path, theirs in found:
        if theirs is not None and theirs != bundle:
            raise FileExistsError(f"label-efficiency: --out {out} holds the study of {theirs} "
                                  f"({path.relative_to(out)}), not of {bundle}; a study there would replace its "
                                  f"results and runs: pass --out {out / bundle} (or another folder)")


def _run_names(out: Path) -> list[str]:
    try:
        return sorted(p.name for p in (out / "runs").iterdir() if p.is_dir())
    except OSError:
        return []


def _option(arm: str, from_pretrained: bool, path: str, auto: bool = False) -> str:
    if auto:
        return f"--pretrained auto (the pretraining bundle's export {path})"
    return f"--pretrained {path}" if from_pretrained else f"--weights {arm}={path}"


def check_weights(given: Mapping[str, str], arms: Sequence[str], from_pretrained: bool, small: bool,
                  variant: str | None, auto: bool = False) -> None:
    """Refuse the weights of an arm that is missing, unreadable (text, empty, not a torch file) or of another variant
    than the study's network (``variant``), naming the option it came from and the fix.

    Args:
        given: arm -> weights path, from ``--weights`` and ``--pretrained``.
        arms: the study's arms; weights of other arms are not used, so not checked.
        from_pretrained: the ``pretrained`` arm's path came from ``--pretrained`` (not ``--weights``).
        small: the small scale, where an arm without weights is pretrained by the study.
        variant: the variant the study fine-tunes (``None``: not checked).
        auto: the ``pretrained`` arm's path is the one ``--pretrained auto`` chose at the full scale (the
            pretraining bundle's ``models/model.pt``), named so in a refusal.
    """
    from unimiss_monai.networks.pretrained import detect_variant, read_checkpoint
    from unimiss_monai.networks.weights_file import weights_in_folder

    for arm, given_path in given.items():
        if arm not in arms:
            continue
        via_pretrained = arm == "pretrained" and from_pretrained
        option = _option(arm, via_pretrained, given_path, auto and arm == "pretrained")
        what = "label-efficiency: " + ("--pretrained" + (" auto" if auto and arm == "pretrained" else "")
                                       if via_pretrained else f"--weights {arm}")
        # a pretraining run's folder or a bundle stands for its models/model.pt, as the runs' --pretrained_path reads
        path = weights_in_folder(given_path, what)
        if not Path(path).is_file():
            if via_pretrained:
                fix = ("pass an existing weights file, --pretrained auto (pretrained by the study at the small scale, "
                       "else the shipped unimiss_pretraining weights) or --pretrained none (no pretrained arm)")
            elif small:
                fix = f"pass an existing file, or leave {arm} out of --weights to pretrain it"
            else:
                fix = "pass an existing file (a unimiss_pretraining export)"
            raise FileNotFoundError(f"label-efficiency: {option} not found; {fix}")
        try:
            state, info = read_checkpoint(path, what)
        except ValueError as err:
            # the reader names the file in most of its refusals; one that does not gets the option and file first
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(text if path in text else f"label-efficiency: {option}: {text}") from None
        theirs = info.get("variant") or detect_variant(state)
        if variant is not None and theirs is not None and theirs != variant:
            export = f"{'--pretrained PATH, ' if auto else ''}the export of a {variant} pretraining"
            raise ValueError(f"label-efficiency: {option} holds {theirs} weights, the study's model is {variant}; "
                             f"pass --variant {theirs} to fine-tune that variant, or {export}")


def study_variant(config_files: Sequence[str], ids: Mapping) -> str | None:
    """The variant of the network the study fine-tunes: the configs' ``network_def#variant`` with ``ids`` (the scale
    and the command's overrides, which may set ``--variant``) applied; ``None`` when the configs do not say."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(config_files))
    parser.update(dict(ids))
    try:
        value = parser.get_parsed_content("network_def#variant")
    except Exception:  # noqa: BLE001 - a bundle without that id: the runs themselves check the weights
        return None
    return value if isinstance(value, str) else None
