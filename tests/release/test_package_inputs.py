"""package-bundle: wrong inputs stop it with one line naming the file and the fix, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimiss_monai.release.package import package_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_pretraining"


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_weights_that_are_no_file(tmp_path, kind):
    weights = tmp_path / "outputs" / "models"
    if kind == "folder":
        weights.mkdir(parents=True)  # e.g. --weights <output_dir>/models instead of .../models/model.pt
    # a folder was said not to exist, which it plainly does
    said = "is a folder, not a file; pass the models/model.pt" if kind == "folder" else "do not exist; pass the models"
    with pytest.raises(ValueError, match=rf"^weights {weights} {said}"):
        package_bundle(str(BUNDLE), weights=str(weights), out=str(tmp_path / "dist"), training="x")
    if kind == "folder":  # the file in it is named
        (weights / "model.pt").write_bytes(b"")
        inside = weights / "model.pt"
        with pytest.raises(ValueError, match=rf"is a folder, not a file; .* \(here: --weights {inside}\)"):
            package_bundle(str(BUNDLE), weights=str(weights), out=str(tmp_path / "dist"), training="x")
    assert not (tmp_path / "dist").exists()


def test_a_refused_file_leaves_the_release_folder_as_it_was(tiny_export, tmp_path):
    """Every file a release writes is checked before the first is written: a weights file of another release under
    the same name stops the command with the zip and the index still absent, not half a release."""
    import json

    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    out = tmp_path / "dist"
    out.mkdir()
    other = out / f"unimiss_pretraining_v{version}_model.pt"
    other.write_bytes(b"the weights of an earlier release")
    with pytest.raises(ValueError, match=rf"{other} exists with other content"):
        package_bundle(str(BUNDLE), weights=str(tiny_export), out=str(out), training="x", overlay="smoke.yaml")
    assert sorted(p.name for p in out.iterdir()) == [other.name]
    assert other.read_bytes() == b"the weights of an earlier release"


def _conv_bundle(root: Path, target: str = "torch.nn.Conv2d") -> Path:
    """A bundle whose network_def is ``target``, a 2D convolution, 1 -> 2 channels, on 8 x 8 inputs."""
    import json

    (root / "configs").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "configs" / "metadata.json").write_text(json.dumps({
        "version": "0.1.0", "changelog": {"0.1.0": "first"},
        "network_data_format": {"inputs": {"image": {"num_channels": 1, "spatial_shape": [8, 8]}}}}))
    (root / "configs" / "inference.json").write_text(json.dumps(
        {"network_def": {"_target_": target, "in_channels": 1, "out_channels": 2, "kernel_size": 3}}))
    (root / "LICENSE").write_text("Apache-2.0\n")
    (root / "docs" / "README.md").write_text("# conv\n")
    return root


@pytest.mark.parametrize("torchscript", [False, True])
def test_weights_that_do_not_fit_the_network_are_one_line(tmp_path, torchscript):
    """Every packaging loads the weights into the bundle's network_def, with or without --torchscript; weights of
    another network (another width, or a backbone export beside a StudentTeacher) stop the command with one line,
    before anything is written."""
    import torch

    from unimiss_monai.release.package import build_release

    bundle = _conv_bundle(tmp_path / "conv")
    payload = {"model": torch.nn.Conv2d(1, 3, 3).state_dict(), "info": {"training": "a test"}}
    with pytest.raises(ValueError) as err:
        build_release(bundle, payload, tmp_path / "dist", torchscript=torchscript)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"package-bundle: the weights for conv v0.1.0 do not fit network_def of "
                              f"{bundle / 'configs' / 'inference.json'}: 0 missing, 0 unexpected, 2 of another shape, "
                              "e.g. weight (3, 1, 3, 3)->(2, 1, 3, 3); package them with the overlay they were trained "
                              "with (--overlay smoke.yaml")
    assert not (tmp_path / "dist").exists()


def test_torchscript_of_fitting_weights_ships_them(tmp_path):
    import io
    import zipfile

    import torch

    from unimiss_monai.release.package import build_release

    bundle = _conv_bundle(tmp_path / "conv")
    conv = torch.nn.Conv2d(1, 2, 3)
    res = build_release(bundle, {"model": conv.state_dict(), "info": {"training": "a test"}}, tmp_path / "dist",
                        torchscript=True)
    with zipfile.ZipFile(res["zip"]) as zf:
        traced = torch.jit.load(io.BytesIO(zf.read("conv/models/model.ts")))
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(traced(x), conv(x))


def test_weights_of_another_bundle_are_not_relabelled(tiny_export, tmp_path):
    """A fine-tuned model records its bundle (CheckpointInfo); packaged as another bundle it would be relabelled, and
    publish-pretrained would later take a segmentation model for pretraining weights."""
    import torch

    weights = tmp_path / "model.pt"
    exported = torch.load(tiny_export, weights_only=True)
    torch.save({"model": exported["model"], "info": {**exported["info"], "bundle": "unimiss_ct_segmentation"}}, weights)
    with pytest.raises(ValueError, match=r"^package-bundle: the weights are a model of bundle 'unimiss_ct_segmentation' "
                                         r"\(their info\.bundle\), not of 'unimiss_pretraining'; package them with"):
        package_bundle(str(BUNDLE), weights=str(weights), out=str(tmp_path / "dist"), training="x")
    assert not (tmp_path / "dist").exists()

    # nor by naming the release after that bundle: its configs would download as the pretraining bundle
    ct_seg = BUNDLE.parent / "unimiss_ct_segmentation"
    for bundle, name in ((ct_seg, "unimiss_pretraining"), (BUNDLE, "unimiss_cxr_segmentation")):
        with pytest.raises(ValueError, match=rf"^package-bundle: --name {name} is the name of the bundle .*{name}; a "
                                             rf"release of {bundle.name} must not ship under it"):
            package_bundle(str(bundle), weights=str(weights), out=str(tmp_path / "dist"), training="x", name=name)
    assert not (tmp_path / "dist").exists()


def test_non_finite_weights_are_never_released(tmp_path):
    import torch

    from unimiss_monai.release.package import build_release

    bundle = _conv_bundle(tmp_path / "conv")
    state = torch.nn.Conv2d(1, 2, 3).state_dict()
    state["bias"][0] = float("inf")
    with pytest.raises(ValueError, match=r"^package-bundle: the weights for conv v0\.1\.0: tensor bias holds NaN or Inf"):
        build_release(bundle, {"model": state, "info": {"training": "a test"}}, tmp_path / "dist")
    assert not (tmp_path / "dist").exists()


def test_the_short_base_url_flag_the_help_lists_works(tmp_path, capsys):
    """``package-bundle --help`` lists ``-b, --base_url``; BUNDLE also starts with b, yet -b is the flag it lists."""
    import json

    from unimiss_monai.cli import main

    main(["package-bundle", str(BUNDLE.parent / "unimiss_drr_generation"), "-b", "https://host/rel", "--out",
          str(tmp_path / "dist")])
    (entry,) = json.loads((tmp_path / "dist" / "model_info.json").read_text()).values()
    assert entry["source"].startswith("https://host/rel/unimiss_drr_generation_v")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["package-bundle", "--help"])
    shown = capsys.readouterr()
    assert "-b, --base_url" in shown.out + shown.err


@pytest.mark.parametrize("base_url", ["notaurl", "ftp://host/rel", "https://", "host/rel"])
def test_a_base_url_that_is_no_address_is_refused_before_anything_is_written(tmp_path, base_url):
    with pytest.raises(ValueError, match=r"^package-bundle: --base_url .* is not an http\(s\):// or file:// address"):
        package_bundle(str(BUNDLE.parent / "unimiss_drr_generation"), out=str(tmp_path / "dist"), base_url=base_url)
    assert not (tmp_path / "dist").exists()


@pytest.mark.parametrize("suffix", [".zip.sha256", "_large_files.yml"])
def test_a_users_checksum_or_large_files_yml_is_not_replaced(tiny_export, tmp_path, suffix):
    """The ``.sha256`` and ``_large_files.yml`` were written over a user's file of the same name (exit 0); they are
    checked as the zip is: refused before anything is written, replaced only with --overwrite, and a file holding
    what this release writes is left unchanged."""
    import json

    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    out = tmp_path / "dist"
    out.mkdir()
    mine = out / f"unimiss_pretraining_v{version}{suffix}"
    mine.write_text("mine\n")
    args = dict(weights=str(tiny_export), out=str(out), training="x", overlay="smoke.yaml")
    with pytest.raises(ValueError, match=rf"^{mine} exists with other content: a released version never changes, so "
                                         r"bump the version in metadata.json \(with a changelog entry\) or pass "
                                         r"--overwrite true$"):
        package_bundle(str(BUNDLE), **args)
    assert sorted(p.name for p in out.iterdir()) == [mine.name] and mine.read_text() == "mine\n"
    package_bundle(str(BUNDLE), overwrite=True, **args)
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    assert written[mine.name] != b"mine\n"
    package_bundle(str(BUNDLE), **args)  # the same release again: every file unchanged, nothing refused
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written


def test_a_users_model_info_json_that_is_no_index_names_the_out_fix(tmp_path):
    """A non-JSON model_info.json of the user's in --out was answered "pass a model_info.json", though no index was
    passed: the line names the file and says to move it or choose another --out, and the file is left as it was."""
    out = tmp_path / "distu"
    out.mkdir()
    (out / "model_info.json").write_text("my notes\n")
    with pytest.raises(ValueError) as caught:
        package_bundle(str(BUNDLE.parent / "unimiss_drr_generation"), out=str(out))
    message = str(caught.value)
    assert "\n" not in message and f"{out / 'model_info.json'} is no release index" in message
    assert "move that file away or choose another --out" in message and "pass a model_info.json" not in message
    assert sorted(p.name for p in out.iterdir()) == ["model_info.json"]
    assert (out / "model_info.json").read_text() == "my notes\n"
