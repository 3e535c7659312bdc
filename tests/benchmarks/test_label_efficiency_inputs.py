"""label-efficiency refuses bad inputs in one line before any work: a folder option that is a file, weights that
cannot be read or are of another variant, and a missing weights file with the options that fix it; and its --help
shows every option's whole text."""

from __future__ import annotations

import inspect

import pytest

from unimiss_monai.benchmarks.label_efficiency import label_efficiency


@pytest.fixture
def no_pretraining(monkeypatch):
    """Pretraining that must not start: the refusals come before it."""
    from unimiss_monai.benchmarks.label_efficiency import pretrain

    calls = []
    monkeypatch.setattr(pretrain, "pretrain_arm", lambda *a, **k: calls.append(a) or pytest.fail("pretraining ran"))
    return calls


@pytest.mark.parametrize("option", ["out", "pretraining_dir"])
def test_a_folder_option_that_is_a_file_is_refused_before_pretraining(tmp_path, no_pretraining, option):
    afile = tmp_path / "afile.txt"
    afile.write_text("hi")
    kw = {"out": str(tmp_path / "study"), option: str(afile)}
    with pytest.raises(FileExistsError) as err:
        label_efficiency(dataset_dir=str(tmp_path / "absent"), **kw)
    assert str(err.value) == (f"label-efficiency: --{option} {afile} is a file, not a folder; move that file away or "
                              f"choose another --{option}")
    assert not no_pretraining and not (tmp_path / "study").exists()


@pytest.mark.parametrize("content", [b"hi\n", b""], ids=["text", "empty"])
def test_unreadable_pretrained_weights_are_refused_before_any_run(tmp_path, content):
    weights = tmp_path / "afile.txt"
    weights.write_bytes(content)
    with pytest.raises(ValueError) as err:
        label_efficiency(pretrained=str(weights), out=str(tmp_path / "study"), dataset_dir=str(tmp_path / "absent"))
    message = str(err.value)
    assert message.startswith(f"label-efficiency: --pretrained '{weights}' is not a file written by torch.save")
    assert "pass a .pt/.pth checkpoint" in message and "\n" not in message
    assert not (tmp_path / "study").exists()


def test_weights_of_another_variant_are_refused_naming_the_variant_option(tmp_path):
    import torch

    weights = tmp_path / "tiny.pt"
    torch.save({"model": {"patch_embed.weight": torch.zeros(1)}, "info": {"variant": "mit_tiny"}}, weights)
    common = dict(pretrained=str(weights), out=str(tmp_path / "study"), dataset_dir=str(tmp_path / "absent"))
    with pytest.raises(ValueError) as err:
        label_efficiency(**common)
    assert str(err.value) == (f"label-efficiency: --pretrained {weights} holds mit_tiny weights, the study's model is "
                              "mitplus; pass --variant mit_tiny to fine-tune that variant, or the export of a mitplus "
                              "pretraining")
    assert not (tmp_path / "study").exists()
    # the option it names passes the check: past it, the (absent) data is what stops the study
    with pytest.raises(Exception) as err:
        label_efficiency(**common, variant="mit_tiny")
    assert "holds mit_tiny weights" not in str(err.value)


def test_a_pretraining_run_folder_stands_for_its_export(tmp_path):
    """The runs read a folder's models/model.pt (as --pretrained_path does); the check said the folder was not found."""
    import torch

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    torch.save({"model": {"patch_embed.weight": torch.zeros(1)}, "info": {"variant": "mit_tiny"}},
               run / "models" / "model.pt")
    with pytest.raises(ValueError, match=r"^label-efficiency: --pretrained .*/run holds mit_tiny weights, the study"):
        label_efficiency(pretrained=str(run), out=str(tmp_path / "study"), dataset_dir=str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"^label-efficiency: --pretrained .*/models' is a folder without "
                                                r"models/model.pt"):
        label_efficiency(pretrained=str(run / "models"), out=str(tmp_path / "study"))


def test_a_missing_weights_file_names_the_options_the_user_has(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        label_efficiency(pretrained="nothere.pt", out=str(tmp_path / "study"))
    message = str(err.value)
    assert message.startswith("label-efficiency: --pretrained nothere.pt not found; pass an existing weights file, "
                              "--pretrained auto")
    assert "--pretrained none" in message and "--weights" not in message
    with pytest.raises(FileNotFoundError) as err:
        label_efficiency(arms="scratch,unimiss", weights="unimiss=nothere.pt", out=str(tmp_path / "study"))
    assert str(err.value) == ("label-efficiency: --weights unimiss=nothere.pt not found; pass an existing file, or "
                              "leave unimiss out of --weights to pretrain it")


@pytest.mark.parametrize("content", ["mit_tiny", "text"])
def test_the_shipped_weights_auto_chooses_are_checked_before_any_run(tmp_path, content):
    """At the full scale --pretrained auto reads the pretraining bundle's models/model.pt: weights of another variant
    (or not torch's) failed every pretrained run, after the scratch runs had trained."""
    import shutil

    import torch

    from unimiss_monai.utils.repository import repository_bundle

    bundles = tmp_path / "bundles"
    shutil.copytree(repository_bundle("unimiss_cxr_segmentation", "test", "--x") / "configs",
                    bundles / "unimiss_cxr_segmentation" / "configs")
    shipped = bundles / "unimiss_pretraining" / "models" / "model.pt"
    shipped.parent.mkdir(parents=True)
    if content == "text":
        shipped.write_text("hi")
    else:
        torch.save({"model": {"patch_embed.weight": torch.zeros(1)}, "info": {"variant": "mit_tiny"}}, shipped)
    with pytest.raises(ValueError) as err:
        label_efficiency(small=False, bundles_dir=str(bundles), out=str(tmp_path / "study"),
                         dataset_dir=str(tmp_path / "absent"))
    message = str(err.value)
    if content == "text":
        assert message.startswith(f"label-efficiency: --pretrained auto '{shipped}' is not a file written by torch")
    else:
        assert message == (f"label-efficiency: --pretrained auto (the pretraining bundle's export {shipped}) holds "
                           "mit_tiny weights, the study's model is mitplus; pass --variant mit_tiny to fine-tune that "
                           "variant, or --pretrained PATH, the export of a mitplus pretraining")
    assert "\n" not in message and not (tmp_path / "study").exists()


def test_help_shows_the_whole_text_of_every_option():
    """fire reads a continuation line with a colon as a new argument (or drops what follows the colon), which cut
    the help of --jobs and --pretrained mid-sentence."""
    from fire import docstrings

    parsed = docstrings.parse(inspect.getdoc(label_efficiency))
    names = [a.name for a in parsed.args]
    assert names == list(inspect.signature(label_efficiency).parameters)
    for arg in parsed.args:
        assert arg.description.endswith("."), (arg.name, arg.description)
    described = {a.name: a.description for a in parsed.args}
    assert described["jobs"].endswith("Scores can differ in the last digits between thread counts.")
    assert described["pretrained"].endswith("``none`` drops the arm.")


def _study_folder(out, bundle):
    """A finished study's folder as the study leaves it: its run folders (settings naming the bundle) and results."""
    from label_efficiency_fakes import DESIGN, META, SETTINGS, FakeRunner

    from unimiss_monai.benchmarks.label_efficiency.command import write_results
    from unimiss_monai.benchmarks.label_efficiency.study import build_results, run_study

    settings = {arm: {**s, "bundle": bundle} for arm, s in SETTINGS.items()}
    write_results(build_results(run_study(DESIGN.runs(32), FakeRunner(), out, settings), DESIGN,
                                {**META, "bundle": bundle}), out)
    return {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("left", ["results and runs", "runs only"])
def test_an_out_holding_another_bundles_study_is_refused_before_any_run(tmp_path, no_pretraining, left):
    """A second bundle's study in the same --out trained over the first one's run folders (named by arm, fraction
    and seed only) and replaced its results, without a word."""
    out = tmp_path / "le"
    before = _study_folder(out, "unimiss_cxr_classification")
    if left == "runs only":  # a study killed before its results: its run folders name the bundle
        for name in ("label_efficiency.json", "label_efficiency.md", "label_efficiency.png"):
            (out / name).unlink()
            before.pop(out / name)
    with pytest.raises(FileExistsError) as err:
        label_efficiency(bundle="unimiss_ct_classification", out=str(out), dataset_dir=str(tmp_path / "absent"))
    message = str(err.value)
    found = "label_efficiency.json" if left == "results and runs" else "run_settings.json"
    assert message.startswith(f"label-efficiency: --out {out} holds the study of unimiss_cxr_classification (")
    assert found in message and "not of unimiss_ct_classification" in message
    assert message.endswith(f"pass --out {out / 'unimiss_ct_classification'} (or another folder)")
    assert "\n" not in message and not no_pretraining
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_the_default_out_is_a_folder_of_the_bundle(tmp_path, monkeypatch, no_pretraining):
    """outputs/label_efficiency/<bundle>: the README's command for two bundles gives two folders."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "outputs" / "label_efficiency" / "unimiss_ct_classification" / "label_efficiency.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("{}")  # a user's file where the default puts the results: refused, naming that folder
    with pytest.raises(FileExistsError, match=f"{mine} exists and was not written by unimiss_monai"):
        label_efficiency(bundle="unimiss_ct_classification", dataset_dir=str(tmp_path / "absent"))
    assert mine.read_text() == "{}" and not no_pretraining
