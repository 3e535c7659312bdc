"""TotalSegmentator structure tables: names to label values, merged classes, the sample CT's list."""

from __future__ import annotations

import pytest

from unimiss_monai.data.locators import find_real_ct
from unimiss_monai.data.totalsegmentator import DEFAULT_STRUCTURES, read_totalsegmentator_structures, structure_lookup

STRUCTURES = {"spleen": 1, "kidney_right": 2, "liver": 5, "lung_upper_lobe_left": 10, "lung_lower_lobe_left": 11, "heart": 51}


def test_lookup_merges_and_orders():
    table, names = structure_lookup({"liver": ["liver"], "lung": ["lung_upper_lobe_left", "lung_lower_lobe_left"]}, STRUCTURES)
    assert names == ["liver", "lung"] and table == {5: 1, 10: 2, 11: 2}
    table, names = structure_lookup(["heart", "spleen"], STRUCTURES)
    assert names == ["heart", "spleen"] and table == {51: 1, 1: 2}


def test_lookup_errors():
    with pytest.raises(KeyError, match=r"'lung' .*similar names: \['lung_lower_lobe_left', 'lung_upper_lobe_left'\]"):
        structure_lookup(["lung"], STRUCTURES)
    with pytest.raises(ValueError, match="two classes"):
        structure_lookup({"a": ["liver"], "b": ["liver"]}, STRUCTURES)
    with pytest.raises(ValueError, match="empty"):
        structure_lookup({}, STRUCTURES)


@pytest.mark.skipif(find_real_ct() is None, reason="sample CT not installed")
def test_default_subset_is_in_sample_ct():
    structures = read_totalsegmentator_structures()
    table, names = structure_lookup(DEFAULT_STRUCTURES, structures)
    assert names[6] == "lung" and sum(v == 7 for v in table.values()) == 5 and len(table) == 13
