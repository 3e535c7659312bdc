"""One module per report section; each builds a :class:`~unimiss_monai.report.document.Section` from a run folder."""

from .classification import classification_section
from .ct_segmentation import ct_segmentation_section
from .cxr_segmentation import cxr_segmentation_section
from .drr import drr_section
from .label_efficiency import label_efficiency_section
from .pretraining import pretraining_section
from .run_steps import run_section
from .summary import summary_section

#: the report's sections, in page order (the HTML ids are the sections' keys)
SECTIONS = (summary_section, drr_section, pretraining_section, cxr_segmentation_section, ct_segmentation_section,
            classification_section, label_efficiency_section, run_section)

__all__ = ["SECTIONS", "classification_section", "ct_segmentation_section", "cxr_segmentation_section", "drr_section",
           "label_efficiency_section", "pretraining_section", "run_section", "summary_section"]
