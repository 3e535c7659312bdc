"""Independent float64 statement of the DINO cross-entropy, shared by the loss tests."""

import torch


def reference_dino(student, teacher, center, n_teacher_views, student_temp, teacher_temp, skip_same=True):
    """Plain-loop statement: for every (teacher view a, student view b) with a != b, mean over samples of
    H(p_teacher, p_student) = -sum_k p_t[k] * log p_s[k]; the result is the mean over those pairs."""
    student, teacher, center = student.double(), teacher.double(), center.double()
    batch = teacher.shape[0] // n_teacher_views
    n_student_views = student.shape[0] // batch
    pair_losses = []
    for a in range(n_teacher_views):
        for b in range(n_student_views):
            if skip_same and a == b:
                continue
            per_sample = []
            for i in range(batch):
                z_t = (teacher[a * batch + i] - center[0]) / teacher_temp
                p_t = torch.exp(z_t - z_t.max()) / torch.exp(z_t - z_t.max()).sum()
                z_s = student[b * batch + i] / student_temp
                log_p_s = z_s - (z_s.max() + torch.log(torch.exp(z_s - z_s.max()).sum()))
                per_sample.append(-(p_t * log_p_s).sum())
            pair_losses.append(torch.stack(per_sample).mean())
    return torch.stack(pair_losses).mean()
