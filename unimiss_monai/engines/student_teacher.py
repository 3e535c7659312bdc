"""Deprecated: the student/teacher networks moved to :mod:`unimiss_monai.networks.nets.student_teacher`."""

from unimiss_monai.utils.lazy import moved_names

_NEW = "unimiss_monai.networks.nets.student_teacher"
__getattr__ = moved_names(__name__, {n: _NEW for n in (
    "MultiCropOutput", "MultiCropWrapper", "StudentTeacher", "split_backbone_output")})
