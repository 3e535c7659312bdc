"""Array transforms that read the files of a case."""

from __future__ import annotations

import inspect

from monai.transforms import LoadImage

from unimiss_monai.data.ct_series_reader import CTSeriesReader

__all__ = ["LoadCTImage", "register_series_reader"]


def register_series_reader(loader, init, *args, **kwargs) -> None:
    """Register a :class:`~unimiss_monai.data.ct_series_reader.CTSeriesReader` with ``loader`` (a ``LoadImage``
    built by ``init`` from ``args`` and ``kwargs``), made with the reader arguments ``LoadImage`` gave its own
    readers. Only when ``loader`` chooses readers by input (no ``reader=``): a reader the user named stays the one
    asked first.
    """
    if not loader.auto_select:
        return
    signature = inspect.signature(init)
    params = list(signature.parameters.values())
    bound = signature.bind_partial(None, *args, **kwargs).arguments  # None: self
    rest = next((bound.get(p.name, ()) for p in params if p.kind is p.VAR_POSITIONAL), ())
    options = next((bound.get(p.name, {}) for p in params if p.kind is p.VAR_KEYWORD), {})
    try:
        reader = CTSeriesReader(*rest, **options)
    except TypeError:  # as LoadImage does for a reader its arguments do not fit
        reader = CTSeriesReader()
    loader.register(reader)  # registered last, so asked first; its verify_suffix takes grey DICOM folders alone


class LoadCTImage(LoadImage):
    """MONAI ``LoadImage`` that reads a folder of grey DICOM slices with float pixels
    (:class:`~unimiss_monai.data.ct_series_reader.CTSeriesReader`), so that a slice exported with its own rescale
    slope keeps its values and the input checks refuse it by name instead of its values wrapping around into
    plausible HU. Every other input (a file, a colour series) goes to the reader ``LoadImage`` picks for it, and with
    ``reader=`` given every input goes to that reader, as in ``LoadImage``. Arguments are ``LoadImage``'s.

    Returns what ``LoadImage`` returns: ``(X, Y, Z)`` for a series (its values in float even with ``dtype=None``),
    ``(1, X, Y, Z)`` with ``ensure_channel_first``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        register_series_reader(self, LoadImage.__init__, *args, **kwargs)
