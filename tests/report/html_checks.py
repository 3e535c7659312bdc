"""Structural checks of a report page, as a reader would notice them: sections, pictures, alt text, offline."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
from PIL import Image

#: the HTML ids of every section the report must have
SECTION_IDS = ("summary", "drr", "pretraining", "cxr-segmentation", "ct-segmentation", "classification",
               "label-efficiency", "steps")


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "img":
            self.images.append(attrs)
        for key in ("src", "href"):
            if attrs.get(key):
                self.urls.append(attrs[key])


def check_page(text: str) -> list[np.ndarray]:
    """Assert the page is complete and self-contained; returns its decoded pictures (rows x cols x 3)."""
    page = _Collector()
    page.feed(text)
    missing = [s for s in SECTION_IDS if s not in page.sections]
    assert not missing, f"sections missing: {missing} (found {page.sections})"
    assert "script" not in page.tags
    external = [u for u in page.urls if not (u.startswith("#") or u.startswith("data:image/png;base64,"))]
    assert not external, f"the page references outside resources: {external[:3]}"
    assert not re.search(r"url\(\s*['\"]?https?:", text), "CSS loads a remote resource"
    pictures = []
    for img in page.images:
        assert img.get("alt", "").strip(), f"an image without alt text: {img.get('src', '')[:60]}"
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"))
        assert rgb.shape[0] > 20 and rgb.shape[1] > 20, f"picture too small: {rgb.shape} ({img['alt']})"
        colours = np.unique(rgb.reshape(-1, 3)[:: max(1, rgb.size // 30000)], axis=0)
        assert len(colours) > 8, f"picture is blank or nearly one colour: {img['alt']}"
        pictures.append(rgb)
    return pictures
