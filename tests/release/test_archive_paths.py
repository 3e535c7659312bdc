"""Release archives: an entry that is a file and a folder at once is refused by the check, before anything is written."""

from __future__ import annotations

import zipfile

import pytest

from unimiss_monai.release.archive import UnsafeArchiveError, extract_checked


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, b"{}")
    return path


@pytest.mark.parametrize("names, clash", [
    (["n/configs/metadata.json", "n/models", "n/models/model.pt"], "n/models"),
    (["n/models/model.pt", "n/configs/metadata.json", "n/models"], "n/models"),
    (["n", "n/configs/metadata.json"], "n"),
    (["n/configs/metadata.json", "n/configs/metadata.json/x"], "n/configs/metadata.json"),
])
def test_a_file_that_is_also_a_folder_is_refused(tmp_path, names, clash):
    archive = _zip(tmp_path / "n.zip", names)
    dest = tmp_path / "staging"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=f"entry '{clash}' is a file, but other entries lie inside it"):
        extract_checked(archive, "n", dest)
    assert list(dest.iterdir()) == []


def test_a_plain_bundle_archive_unpacks(tmp_path):
    archive = _zip(tmp_path / "n.zip", ["n/", "n/configs/", "n/configs/metadata.json", "n/models/model.pt"])
    out = extract_checked(archive, "n", tmp_path / "staging")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "configs/metadata.json", "models/model.pt"]
