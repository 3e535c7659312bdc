"""The names of the temporaries this package writes beside an output before renaming them onto it (the writers are
:mod:`unimiss_monai.data.temporaries`); kept here, below every room, so that error messages can tell them too."""

from __future__ import annotations

import re

__all__ = ["OLD_TAG", "TMP_TAG", "is_temporary_name"]

# ends the name of every temporary file or folder the writers make, so a leftover of a killed run can be told apart
TMP_TAG = ".unimiss-tmp"
# the previous folder that staged_dir moves aside while it renames the new one in
OLD_TAG = ".unimiss-old"
_NAME = re.compile(r"^\..+\.[a-z0-9_]+(" + re.escape(TMP_TAG) + "|" + re.escape(OLD_TAG) + r")")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is that of a temporary (``.<output name>.<random><tag>[<suffix>]``)."""
    return _NAME.match(name) is not None
