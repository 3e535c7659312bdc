"""Test helper shared by the error-handling tests of this folder."""

from __future__ import annotations


def raised(func) -> BaseException:
    """What ``func()`` raised (any exception); fails the test when it raised nothing."""
    try:
        func()
    except BaseException as e:  # noqa: BLE001 - the tests inspect whatever was raised
        return e
    raise AssertionError("nothing raised")
