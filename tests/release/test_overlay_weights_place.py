"""The seam of a smoke release: package-bundle --overlay smoke.yaml ships the weights where the bundle's configs with
that overlay read them (smoke.yaml: ``ckpt_dir`` models/smoke), and the downloaded bundle then runs with the command
``download`` prints: inference.json + smoke.yaml finds the weights and loads them. A release without overlays keeps
``models/model.pt``, and so does the pretraining bundle's smoke release (fine-tuning bundles read it there)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from unimiss_monai.cli import main
from unimiss_monai.release.network_fit import bundle_network, weights_path

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
SEG = BUNDLES / "unimiss_cxr_segmentation"


def _smoke_weights(tmp_path: Path) -> tuple[Path, dict]:
    """What a smoke training of the segmentation bundle saves (CheckpointInfo: bundle, variant, settings), tiny."""
    torch.manual_seed(0)
    smoke = bundle_network(SEG, ["configs/smoke.yaml"])
    info = {"bundle": SEG.name, "variant": "mitplus", "settings": smoke.parser.get_parsed_content("model_settings")}
    path = tmp_path / "smoke_run" / "model.pt"
    path.parent.mkdir()
    torch.save({"model": smoke.net.state_dict(), "info": info}, path)
    return path, smoke.net.state_dict()


def test_smoke_release_runs_with_the_printed_configs(tmp_path, capsys):
    from monai.bundle import ConfigWorkflow

    weights, state = _smoke_weights(tmp_path)
    dist, dl = tmp_path / "DIST", tmp_path / "DL"
    main(["package-bundle", str(SEG), "--weights", str(weights), "--training", "test", "--out", str(dist),
          "--overlay", "smoke.yaml"])
    packaged = capsys.readouterr().out
    main(["download", SEG.name, "--index", str(dist), "--bundle_dir", str(dl), "--cache_dir", str(tmp_path / "CACHE"),
          "--progress", "false"])
    printed = capsys.readouterr().out
    root = dl / SEG.name

    # the inference workflow of the documented command, from the downloaded files alone
    run_configs = [str(root / "configs" / "inference.json"), str(root / "configs" / "smoke.yaml")]
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 72), dtype=np.uint8)).save(pngs / "case1.png")
    wf = ConfigWorkflow(config_file=run_configs, meta_file=str(root / "configs" / "metadata.json"),
                        workflow_type="inference", bundle_root=str(root), dataset_dir=str(pngs),
                        output_dir=str(tmp_path / "OUT"))
    ckpt = Path(wf.parser.get_parsed_content("ckpt_path"))
    assert ckpt.is_file(), f"no trained model at {ckpt} (the release holds {sorted(root.glob('models/**/*.pt'))})"
    wf.initialize()  # loads the trained model
    loaded = wf.parser.get_parsed_content("network").state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k].cpu(), state[k]) for k in state)
    wf.run()
    wf.finalize()
    assert (tmp_path / "OUT" / "case1_seg.nii.gz").is_file()

    # the release files and both commands' lines say the same place
    assert ckpt == root / "models" / "smoke" / "model.pt"
    assert "weights: models/smoke/model.pt;" in packaged
    (zip_path,) = dist.glob("*.zip")
    with zipfile.ZipFile(zip_path) as zf:
        shipped = [n.split("/", 1)[1] for n in zf.namelist() if n.endswith(".pt")]
    assert shipped == ["models/smoke/model.pt"]
    (large,) = dist.glob("*_large_files.yml")
    assert [f["path"] for f in yaml.safe_load(large.read_text())["large_files"]] == ["models/smoke/model.pt"]
    assert "; weights models/smoke/model.pt: " in printed and "with configs/smoke.yaml only" in printed
    assert f"run it with --config_file \"['{run_configs[0]}','{run_configs[1]}']\"" in printed
    assert printed.rstrip().endswith(f"--bundle_root {root}"), printed  # no --ckpt_dir needed: the configs read it
    assert "\n" not in printed.rstrip()


def test_where_each_release_ships_its_weights():
    # ckpt_dir as the configs resolve it, relative to bundle_root; without overlays models/model.pt as before
    for name in ("unimiss_cxr_segmentation", "unimiss_ct_segmentation", "unimiss_cxr_classification",
                 "unimiss_ct_classification"):
        assert weights_path(BUNDLES / name, ["configs/smoke.yaml"]) == "models/smoke/model.pt"
        assert weights_path(BUNDLES / name) == "models/model.pt"
    # the pretraining bundle's smoke.yaml leaves its weights where fine-tuning bundles read a pretraining release
    assert weights_path(BUNDLES / "unimiss_pretraining", ["configs/smoke.yaml"]) == "models/model.pt"


@pytest.mark.parametrize("ckpt_dir", ["'/elsewhere'", "@bundle_root", "@bundle_root + '/weights'"])
def test_an_overlay_reading_weights_where_download_does_not_look_is_refused(tmp_path, ckpt_dir):
    # download finds a release's weights as models/**/model.pt: outside bundle_root, or outside models/, is refused
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "inference.json").write_text((SEG / "configs" / "inference.json").read_text())
    (tmp_path / "configs" / "moved.yaml").write_text(f'ckpt_dir: "${ckpt_dir}"\n')
    with pytest.raises(ValueError, match=r"^package-bundle: .* not from a model.pt under bundle_root/models, so a "
                                         r"release cannot ship them there; .*$"):
        weights_path(tmp_path, ["configs/moved.yaml"])


def _repacked(dist: Path, out: Path, move_to: str, drop_place: bool) -> None:
    """The release in ``dist`` rewritten into ``out`` with its weights at ``move_to`` (and, ``drop_place``, without
    ``info.weights_path``: what package-bundle wrote before it shipped weights where the overlays read them)."""
    from unimiss_monai.release.archive import sha256_bytes, torch_bytes, zip_bytes
    from unimiss_monai.release.index import update_index

    (zip_path,) = dist.glob("*.zip")
    with zipfile.ZipFile(zip_path) as zf:
        entries = [(n, zf.read(n)) for n in zf.namelist() if not n.endswith("/")]
    pt = next(i for i, (n, _) in enumerate(entries) if n.endswith("model.pt"))
    payload = torch.load(io.BytesIO(entries[pt][1]), weights_only=True)
    if drop_place:
        payload["info"].pop("weights_path")
    entries[pt] = (f"{SEG.name}/{move_to}", torch_bytes(payload))
    data = zip_bytes(entries)
    out.mkdir()
    (out / zip_path.name).write_bytes(data)
    update_index(out / "model_info.json", SEG.name, zip_path.name[len(SEG.name) + 2:-4], zip_path.name,
                 sha256_bytes(data), len(data))


def test_download_of_weights_elsewhere_than_recorded(tmp_path, capsys):
    from unimiss_monai.release.download import DownloadError, download

    weights, _ = _smoke_weights(tmp_path)
    main(["package-bundle", str(SEG), "--weights", str(weights), "--training", "test", "--out", str(tmp_path / "d"),
          "--overlay", "smoke.yaml"])
    # a release of the earlier package-bundle (models/model.pt, no recorded place): the line adds --ckpt_dir
    _repacked(tmp_path / "d", tmp_path / "old", "models/model.pt", drop_place=True)
    capsys.readouterr()
    got = download(SEG.name, index=str(tmp_path / "old"), bundle_dir=str(tmp_path / "b1"),
                   cache_dir=str(tmp_path / "c1"), progress=False)
    assert got["weights"]["path"] == "models/model.pt"
    assert capsys.readouterr().out.rstrip().endswith(f"--ckpt_dir {tmp_path / 'b1' / SEG.name / 'models'}")
    # weights moved away from the place they record: the configs would not find them, so nothing is unpacked
    _repacked(tmp_path / "d", tmp_path / "bad", "models/model.pt", drop_place=False)
    with pytest.raises(DownloadError, match=r"models/model\.pt records its place as models/smoke/model\.pt, where the "
                                            r"configs with configs/smoke\.yaml read it; the release is inconsistent"):
        download(SEG.name, index=str(tmp_path / "bad"), bundle_dir=str(tmp_path / "b2"),
                 cache_dir=str(tmp_path / "c2"), progress=False)
    assert not (tmp_path / "b2" / SEG.name).exists()
