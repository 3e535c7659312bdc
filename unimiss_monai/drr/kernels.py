"""Compiled CPU kernels (numba) for the DRR: exact Siddon walk, plane-sampled trilinear marching, label thickness.

All kernels take the volume flattened in C order with its shape and rays in continuous voxel-index coordinates (voxel
``n`` spans ``[n - 0.5, n + 0.5]``): for :func:`view_kernel`, used by :func:`unimiss_monai.drr.render`, the flat-panel
frame from which each ray is generated in the loop (no per-view ray arrays: at 512x512 those cost more than the
projection's memory traffic); for :func:`label_kernel`, one source point, a ``(R1, R2, 3)`` block of detector points
and the world length of every source->pixel segment (so a parameter step ``da`` along a ray is ``da * length`` mm). The
outer ray axis runs in parallel; rays are ordered so the inner loop moves along the volume's contiguous axis, which
keeps neighbouring rays on the same cache lines (the whole slab of voxels one detector column crosses stays in L2).
With the detector rows in the outer loop instead, an AP view of a 512x512x133 CT takes about 3x longer. Rays that run
along the contiguous axis themselves (a lateral view of a NIfTI CT) are walked in strips of detector columns, line by
line, so that the next line's rays find the same voxels still in cache: 1.2-1.6x faster at 256x256 and 512x512.

The Siddon walk's speed came from its control flow, not from memory: keeping the walk's position as an integer
slab count and the index updates free of branches made an AP view 1.25x faster, and leaving reassociation out of
fast-math (``_FASTMATH``) made the trilinear view 1.4x faster. It skips the blocks of zeros at either end of a ray
(:mod:`.empty_space`). Other orders and formulations measured against these kernels (a sweep of a row of rays one
layer at a time, a copy with the ray's axis contiguous, branch-free layers, prefix sums, ...) were slower or at most
10 % faster on the AP view; the DRR bundle's docs ("Benchmark") list them with their timings.

The kernels run without Python's interpreter lock (``nogil``), so that the DRR engine's reader thread can decompress
the next CT meanwhile. Every function and constant the cached kernels compile in is defined in this file: numba's
on-disk cache is invalidated only when the file that defines a kernel changes, so an inlined helper from another file
could go stale.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["SIDDON", "TRILINEAR", "view_kernel", "label_kernel", "skip_empty"]

_INF = 1e30
# fast-math without reassociation: with it, LLVM sums the short runs of whole slabs with masked AVX-512 gathers
# when numba recompiles the cached module, and the cached view kernel ran 1.2x slower than a fresh compile
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
SIDDON, TRILINEAR = 0, 1  # ``method`` codes of :func:`view_kernel`
# skip_empty stops this far (parameter units, a ray spanning 0..1) short of the face of the first marked block, which
# it finds by summing face distances, so rounding never starts the walk inside that block; a voxel is about 1e-3
_MARGIN = 1e-10


@njit(inline="always", fastmath=_FASTMATH)
def _entry(src, tgt, shape):
    """Parametric entry/exit of a ray with the volume box, clipped to the source->pixel segment."""
    a_lo, a_hi = 0.0, 1.0
    for ax in range(3):
        d = tgt[ax] - src[ax]
        lo, hi = -0.5, shape[ax] - 0.5
        if d == 0.0:
            if src[ax] < lo or src[ax] > hi:
                return 1.0, 0.0
        else:
            t0, t1 = (lo - src[ax]) / d, (hi - src[ax]) / d
            if t0 > t1:
                t0, t1 = t1, t0
            a_lo, a_hi = max(a_lo, t0), min(a_hi, t1)
    return a_lo, a_hi


@njit(inline="always", fastmath=_FASTMATH)
def _axis_start(s, d, n, a_lo):
    """Voxel index, index step, next crossing parameter and crossing interval along one axis at the entry point."""
    i = min(max(int(math.floor(s + a_lo * d + 0.5)), 0), n - 1)
    if d > 0.0:
        return i, 1, (i + 0.5 - s) / d, 1.0 / d
    if d < 0.0:
        return i, -1, (i - 0.5 - s) / d, -1.0 / d
    return i, 0, _INF, _INF


@njit(inline="always")
def _stride(shape, ax):
    """C-order stride (elements) of voxel axis ``ax``."""
    if ax == 0:
        return shape[1] * shape[2]
    return shape[2] if ax == 1 else 1


@njit(inline="always")
def _block_start(p, d, b, n):
    """Block index of coordinate ``p`` (clamped into the map), step, distance (parameter units) to its next face."""
    i = min(max(int(math.floor((p + 0.5) / b)), 0), n - 1)
    if d > 0.0:
        return i, 1, ((i + 1) * b - 0.5 - p) / d, b / d
    if d < 0.0:
        return i, -1, (i * b - 0.5 - p) / d, -b / d
    return i, 0, _INF, _INF


@njit(inline="always")
def skip_empty(occ, b, src, tgt, a_lo, a_hi, sign):
    """Parameter distance from ``a_lo`` (``sign`` 1, walking forward) or ``a_hi`` (``sign`` -1, backward) to the
    first block of ``occ`` (``(B0, B1, B2)`` uint8, blocks of ``b`` voxels, :mod:`.empty_space`) that holds a nonzero
    voxel, ``_MARGIN`` short of its face; the whole span ``a_hi - a_lo`` when the ray meets none. Voxel ``n`` spans
    ``[n - 0.5, n + 0.5]``, so block ``k`` spans ``[k * b - 0.5, (k + 1) * b - 0.5]``.
    """
    a = a_lo if sign > 0 else a_hi
    d0, d1, d2 = tgt[0] - src[0], tgt[1] - src[1], tgt[2] - src[2]
    n0, n1, n2 = occ.shape
    i0, s0, t0, e0 = _block_start(src[0] + a * d0, d0 * sign, b, n0)
    i1, s1, t1, e1 = _block_start(src[1] + a * d1, d1 * sign, b, n1)
    i2, s2, t2, e2 = _block_start(src[2] + a * d2, d2 * sign, b, n2)
    span = a_hi - a_lo
    t = 0.0
    while not occ[i0, i1, i2]:
        if t0 <= t1 and t0 <= t2:
            t, i0, t0 = t0, i0 + s0, t0 + e0
            if i0 < 0 or i0 >= n0:
                return span
        elif t1 <= t2:
            t, i1, t1 = t1, i1 + s1, t1 + e1
            if i1 < 0 or i1 >= n1:
                return span
        else:
            t, i2, t2 = t2, i2 + s2, t2 + e2
            if i2 < 0 or i2 >= n2:
                return span
        if t >= span:
            return span
    return max(t - _MARGIN, 0.0)


@njit(inline="always")
def _walked_span(occ, b, src, tgt, shape):
    """Parameters where a ray's walk starts and ends: where it enters and leaves the volume box, moved past the blocks
    of ``occ`` without a nonzero voxel at either end (:func:`skip_empty`); ``a_lo >= a_hi`` when there is nothing to
    walk."""
    a_lo, a_hi = _entry(src, tgt, shape)
    if a_lo >= a_hi:
        return a_lo, a_hi
    t_lo = skip_empty(occ, b, src, tgt, a_lo, a_hi, 1)
    if t_lo >= a_hi - a_lo:
        return 1.0, 0.0
    return a_lo + t_lo, a_hi - skip_empty(occ, b, src, tgt, a_lo, a_hi, -1)


@njit(inline="always", fastmath=_FASTMATH, boundscheck=False)
def _siddon_ray(vol, shape, src, tgt, a_lo, a_hi):
    """Exact radiological path of one ray from parameter ``a_lo`` to ``a_hi`` (inside the volume box, ``a_lo < a_hi``)
    in parameter units (multiply by the segment length for mm).

    The ray is walked one slab of its dominant voxel axis ``m`` at a time: slab ``k`` ends at parameter
    ``m0 + k * dlm``, cut by the entry and the exit. Inside a slab the ray crosses at most one face of each other
    axis. A slab that holds such a crossing (or the entry or exit) takes the general step: up to three exact segments,
    without branches. The slabs between crossings are exactly ``dlm`` long, so the loop only sums voxel values there.

    Each other axis's next crossing is also kept as the number of the slab that holds it (``ka``, ``kb``), so the
    walk's position is an integer slab count and the float arithmetic of the crossings runs beside it, not in one
    chain of dependent steps. With that, and the index updates as arithmetic rather than branches (which axis
    crosses next is unpredictable), an AP view ran 1.25x faster with the same image to the last bit (DRR bundle
    docs). Flat indices are unsigned and clamped into the volume, so rounding can never read outside it.
    """
    d0, d1, d2 = tgt[0] - src[0], tgt[1] - src[1], tgt[2] - src[2]
    ad0, ad1, ad2 = abs(d0), abs(d1), abs(d2)
    if ad0 >= ad1 and ad0 >= ad2:
        m, a, b = 0, 1, 2
    elif ad1 >= ad2:
        m, a, b = 1, 0, 2
    else:
        m, a, b = 2, 0, 1
    sm, sa, sb = _stride(shape, m), _stride(shape, a), _stride(shape, b)
    na_, nb_ = shape[a], shape[b]
    im, stm, m0, dlm = _axis_start(src[m], tgt[m] - src[m], shape[m], a_lo)
    ia, sta, xa, dla = _axis_start(src[a], tgt[a] - src[a], na_, a_lo)
    ib, stb, xb, dlb = _axis_start(src[b], tgt[b] - src[b], nb_, a_lo)
    last = min(max(int(math.floor(src[m] + a_hi * (tgt[m] - src[m]) + 0.5)), 0), shape[m] - 1)
    k_last = abs(last - im)
    # a crossing at parameter x lies in slab floor((x - m0) / dlm) + 1, which int() gives as x >= m0 - dlm (the
    # start of slab 0); u is that position plus one, capped so that a ray parallel to an axis (x = _INF) still
    # converts to a small int
    inv_dlm = abs(tgt[m] - src[m])
    cap = float(k_last + 1)
    ua = min((xa - m0) * inv_dlm + 1.0, cap)
    ub = min((xb - m0) * inv_dlm + 1.0, cap)
    ra, rb = dla * inv_dlm, dlb * inv_dlm
    # a crossing past the exit belongs to no slab
    ka = int(ua) if xa < a_hi else k_last + 1
    kb = int(ub) if xb < a_hi else k_last + 1
    acc = 0.0
    q = im * sm + ia * sa + ib * sb
    step = stm * sm
    k = 0
    while True:
        s0 = max(m0 + (k - 1) * dlm, a_lo)
        end = min(m0 + k * dlm, a_hi)
        ca = ka <= k
        cb = kb <= k
        ta = max(xa, s0) if ca else end
        tb = max(xb, s0) if cb else end
        ia2 = min(max(ia + sta * np.int64(ca), 0), na_ - 1)
        ib2 = min(max(ib + stb * np.int64(cb), 0), nb_ - 1)
        qa = q + (ia2 - ia) * sa
        qb = q + (ib2 - ib) * sb
        q11 = qa + (ib2 - ib) * sb
        t1 = min(ta, tb)
        t2 = max(ta, tb)
        qmid = qa if ta <= tb else qb
        acc += (t1 - s0) * vol[np.uint64(q)] + (t2 - t1) * vol[np.uint64(qmid)] + (end - t2) * vol[np.uint64(q11)]
        # the following crossing of each axis, computed before knowing whether this slab used the pending one
        ua_n, ub_n = min(ua + ra, cap), min(ub + rb, cap)
        xa_n, xb_n = xa + dla, xb + dlb
        ka_n = int(ua_n) if xa_n < a_hi else k_last + 1
        kb_n = int(ub_n) if xb_n < a_hi else k_last + 1
        if ca:
            xa, ua, ka = xa_n, ua_n, ka_n
        if cb:
            xb, ub, kb = xb_n, ub_n, kb_n
        ia, ib = ia2, ib2
        if k >= k_last:
            break
        q = q11 + step
        k += 1
        # whole slabs before the next crossing (and before the last slab)
        k_next = min(min(ka, kb), k_last)
        s = 0.0
        for _ in range(k_next - k):
            s += vol[np.uint64(q)]
            q += step
        acc += s * dlm
        k = max(k, k_next)
    return acc


@njit(parallel=True, nogil=True, fastmath=_FASTMATH, cache=True)
def label_kernel(labels, shape, lut, occ, block, src, tgts, lengths, out):
    """Siddon walk of an integer label volume: ``out[c, r1, r2]`` = path length (mm) inside labels mapped to ``c``.

    ``lut[label]`` is the output channel of a label value, or -1 to skip it. Each ray's ends are skipped through the
    blocks that ``occ`` (blocks of ``block`` voxels) marks as holding no label the table maps, as in :func:`view_kernel`.
    """
    n1, n2 = tgts.shape[0], tgts.shape[1]
    s1, s2 = shape[1] * shape[2], shape[2]
    n_lut = lut.shape[0]
    for r1 in prange(n1):
        for r2 in range(n2):
            tgt = tgts[r1, r2]
            a_lo, a_hi = _walked_span(occ, block, src, tgt, shape)
            if a_lo >= a_hi:
                continue
            i0, st0, n0_, dl0 = _axis_start(src[0], tgt[0] - src[0], shape[0], a_lo)
            i1, st1, n1_, dl1 = _axis_start(src[1], tgt[1] - src[1], shape[1], a_lo)
            i2, st2, n2_, dl2 = _axis_start(src[2], tgt[2] - src[2], shape[2], a_lo)
            length = lengths[r1, r2]
            a = a_lo
            while True:
                lab = labels[i0 * s1 + i1 * s2 + i2]
                if n0_ <= n1_ and n0_ <= n2_:
                    a_next = min(n0_, a_hi)
                    i0 += st0
                    n0_ += dl0
                    stop = a_next >= a_hi or i0 < 0 or i0 >= shape[0]
                elif n1_ <= n2_:
                    a_next = min(n1_, a_hi)
                    i1 += st1
                    n1_ += dl1
                    stop = a_next >= a_hi or i1 < 0 or i1 >= shape[1]
                else:
                    a_next = min(n2_, a_hi)
                    i2 += st2
                    n2_ += dl2
                    stop = a_next >= a_hi or i2 < 0 or i2 >= shape[2]
                if 0 <= lab < n_lut and lut[lab] >= 0:
                    out[lut[lab], r1, r2] += (a_next - a) * length
                if stop:
                    break
                a = a_next


@njit(inline="always", fastmath=_FASTMATH, boundscheck=False)
def _joseph_ray(vol, shape, src, tgt):
    """Plane-sampled trilinear integral of one ray in parameter units (Joseph's method, zeros outside the volume).

    The ray is sampled once per voxel plane of its dominant axis ``m``, where trilinear interpolation reduces to
    bilinear interpolation in the plane. A ray along ``m`` through a uniform box thus sums to exactly its chord length,
    and the linear fall-off across a side face integrates to the same mass as the sharp face (mass-conserving
    boundary).
    """
    d0, d1, d2 = tgt[0] - src[0], tgt[1] - src[1], tgt[2] - src[2]
    ad0, ad1, ad2 = abs(d0), abs(d1), abs(d2)
    if ad0 >= ad1 and ad0 >= ad2:
        m, a, b = 0, 1, 2
        dm, da, db = d0, d1, d2
    elif ad1 >= ad2:
        m, a, b = 1, 0, 2
        dm, da, db = d1, d0, d2
    else:
        m, a, b = 2, 0, 1
        dm, da, db = d2, d0, d1
    if dm == 0.0:
        return 0.0
    nm, na, nb = shape[m], shape[a], shape[b]
    sm, sa, sb = _stride(shape, m), _stride(shape, a), _stride(shape, b)
    # planes p of the dominant axis crossed between source (alpha 0) and pixel (alpha 1)
    p_lo = src[m] if dm > 0 else src[m] + dm
    p_hi = src[m] + dm if dm > 0 else src[m]
    first = max(0, int(math.ceil(p_lo)))
    last = min(nm - 1, int(math.floor(p_hi)))
    acc = 0.0
    ka, kb = da / dm, db / dm  # in-plane shift per plane
    pa = src[a] + (first - src[m]) * ka
    pb = src[b] + (first - src[m]) * kb
    usa, usb = np.uint64(sa), np.uint64(sb)
    for p in range(first, last + 1):
        fa = math.floor(pa)
        fb = math.floor(pb)
        ia, ib = int(fa), int(fb)
        wa, wb = pa - fa, pb - fb
        pa += ka
        pb += kb
        if ia < 0 or ia + 1 >= na or ib < 0 or ib + 1 >= nb:
            # rim of the volume: neighbours outside count as zero
            if ia < -1 or ia >= na or ib < -1 or ib >= nb:
                continue
            base = p * sm
            v = 0.0
            if ia >= 0:
                if ib >= 0:
                    v += (1.0 - wa) * (1.0 - wb) * vol[base + ia * sa + ib * sb]
                if ib + 1 < nb:
                    v += (1.0 - wa) * wb * vol[base + ia * sa + (ib + 1) * sb]
            if ia + 1 < na:
                if ib >= 0:
                    v += wa * (1.0 - wb) * vol[base + (ia + 1) * sa + ib * sb]
                if ib + 1 < nb:
                    v += wa * wb * vol[base + (ia + 1) * sa + (ib + 1) * sb]
            acc += v
            continue
        # unsigned flat indices: no negative-index wraparound per load; bilinear weights in float32 like the volume
        q = np.uint64(p * sm + ia * sa + ib * sb)
        v00, v01 = vol[q], vol[q + usb]
        v10, v11 = vol[q + usa], vol[q + usa + usb]
        fwb = np.float32(wb)
        lo = v00 + fwb * (v01 - v00)
        hi = v10 + fwb * (v11 - v10)
        acc += lo + wa * (hi - lo)
    return acc / abs(dm)


@njit(fastmath=_FASTMATH)  # a plain call: parfors cannot analyse an inlined tuple return; LLVM inlines it
def _pixel_ray(frame, world, r, c):
    """Voxel-space end point ``(3-tuple)`` and world length (mm) of the ray to detector pixel ``(r, c)``.

    ``frame`` / ``world``: rows source, centre of pixel (0, 0), step per detector row, step per detector column, in
    voxel-index coordinates / in mm.
    """
    t0 = frame[1, 0] + r * frame[2, 0] + c * frame[3, 0]
    t1 = frame[1, 1] + r * frame[2, 1] + c * frame[3, 1]
    t2 = frame[1, 2] + r * frame[2, 2] + c * frame[3, 2]
    e0 = world[1, 0] + r * world[2, 0] + c * world[3, 0] - world[0, 0]
    e1 = world[1, 1] + r * world[2, 1] + c * world[3, 1] - world[0, 1]
    e2 = world[1, 2] + r * world[2, 2] + c * world[3, 2] - world[0, 2]
    return (t0, t1, t2), math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)


@njit(parallel=True, nogil=True, fastmath=_FASTMATH, cache=True)
def view_kernel(vol, shape, occ, block, frame, world, rows_inner, strip, method, out):
    """Line integrals (mm x value) of a whole flat-panel view ``out`` ``(H, W)`` with rays generated on the fly from
    the detector frame (no per-view ray arrays); ``method`` is :data:`SIDDON` or :data:`TRILINEAR`.

    ``rows_inner`` puts detector rows in the inner loop: choose the order in which neighbouring rays move along the
    volume's contiguous axis so they share cache lines. ``strip`` 0 hands the threads whole lines of the inner
    axis; ``strip > 0`` cuts the inner axis into strips that wide, each walked line by line, for rays that run along
    the contiguous axis, whose neighbours in a line share no cache lines but the next line's rays read the same
    voxels (:func:`unimiss_monai.drr.layout.loop_order`). The method test is the same for every ray, so it costs no
    mispredictions and one loop serves both projectors. The Siddon walk skips the ray's ends through blocks that
    ``occ`` (blocks of ``block`` voxels, :mod:`.empty_space`) marks as all zeros; the trilinear projector samples
    between voxels, so it walks the whole ray.
    """
    src = frame[0]
    n_rows, n_cols = out.shape
    n_outer, n_inner = (n_cols, n_rows) if rows_inner else (n_rows, n_cols)
    # a task: lines [o0, o0 + t_outer) of the inner axis's span [i0, i0 + t_inner)
    t_outer, t_inner = (n_outer, strip) if strip > 0 else (1, n_inner)
    n_strips = (n_inner + t_inner - 1) // t_inner
    for task in prange(n_strips * ((n_outer + t_outer - 1) // t_outer)):
        o0, i0 = (task // n_strips) * t_outer, (task % n_strips) * t_inner
        for i in range(o0, min(o0 + t_outer, n_outer)):
            for j in range(i0, min(i0 + t_inner, n_inner)):
                # prange indices may be unsigned: keep both indices int64 so the tuple below stays integer
                r, c = (np.int64(j), np.int64(i)) if rows_inner else (np.int64(i), np.int64(j))
                tgt, length = _pixel_ray(frame, world, r, c)
                if method == SIDDON:
                    a_lo, a_hi = _walked_span(occ, block, src, tgt, shape)
                    out[r, c] = _siddon_ray(vol, shape, src, tgt, a_lo, a_hi) * length if a_lo < a_hi else 0.0
                else:
                    out[r, c] = _joseph_ray(vol, shape, src, tgt) * length
