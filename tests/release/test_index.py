"""The release index: which entry a name and version resolve to."""

from __future__ import annotations

from unimiss_monai.release.index import resolve


def _entry(name: str, version: str) -> dict:
    return {"name": name, "version": version, "source": f"{name}_v{version}.zip", "hash_type": "sha256",
            "hash_val": "0" * 64, "size": 10}


def test_newest_version_ignores_bundles_whose_name_extends_this_one():
    """``unimiss_pretraining_v2`` (another bundle, e.g. a ``release-official --name``) shares the key prefix
    ``unimiss_pretraining_v`` of ``unimiss_pretraining``; its entries are no versions of ``unimiss_pretraining``."""
    entries = {f"{n}_v{v}": _entry(n, v) for n, v in [("unimiss_pretraining", "0.2.0"), ("unimiss_pretraining", "0.10.0"),
                                                      ("unimiss_pretraining_v2", "0.1.0"),
                                                      ("unimiss_pretraining_vit", "9.0.0")]}
    entry = resolve(entries, "https://host/dist/model_info.json", "unimiss_pretraining", None, "index")
    assert (entry.name, entry.version, entry.url) == ("unimiss_pretraining", "0.10.0",
                                                      "https://host/dist/unimiss_pretraining_v0.10.0.zip")
    assert resolve(entries, "https://host/dist/model_info.json", "unimiss_pretraining_v2", None, "index").version == "0.1.0"


def test_a_folder_where_the_index_goes_is_refused(tmp_path):
    import pytest

    from unimiss_monai.release.index import update_index

    (tmp_path / "model_info.json").mkdir()
    with pytest.raises(ValueError, match="model_info.json is a folder, not a release index"):
        update_index(tmp_path / "model_info.json", "n", "0.1.0", "n_v0.1.0.zip", "0" * 64, 10)


def test_a_refused_entry_or_name_says_what_the_index_holds():
    """A malformed hash was reported as "no sha256 hash_val", and an index of no ``<name>_v<version>`` keys as
    "it has []"."""
    import pytest

    from unimiss_monai.release.index import ReleaseIndexError

    base, key = "https://host/dist/model_info.json", "unimiss_pretraining_v0.1.0"
    whole = _entry("unimiss_pretraining", "0.1.0")
    no_hash = {k: v for k, v in whole.items() if k != "hash_val"}
    for entry, said in (({**whole, "hash_val": "abc"}, r"hash_val 'abc', not a sha256 \(64 hex digits\)"),
                        ({**whole, "hash_type": "md5"}, "hash_type 'md5', not sha256"), (no_hash, "no hash_val")):
        with pytest.raises(ReleaseIndexError, match=f"entry '{key}' has {said}; refusing an unverifiable download"):
            resolve({key: entry}, base, "unimiss_pretraining", None, "index")
    with pytest.raises(ReleaseIndexError, match=r"no bundle 'unimiss_pretraining' \(it has none: no key of the form"):
        resolve({"unimiss_pretraining": "x"}, base, "unimiss_pretraining", None, "index")
