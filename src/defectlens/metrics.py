"""Evaluation metrics for anomaly detection: image AUROC and F1, pixel AUROC and AUPRO.

Conventions: a higher score means more anomalous; label 1 is anomalous and 0 normal; a sample (or
pixel) is predicted anomalous when ``score >= threshold``. Ground-truth masks are True on defect
pixels. Every invalid input raises :class:`~defectlens.errors.ConfigError` with a message that says
what is wrong.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score

from defectlens.errors import ConfigError

__all__ = [
    "aupro",
    "evaluate",
    "f1_at",
    "f1_max",
    "image_auroc",
    "pixel_auroc",
    "rates_at",
    "recall_at_false_reject_rate",
]

logger = logging.getLogger(__name__)

# 8-connectivity in 2-D, as in the MVTec AD reference evaluation code.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------------------------- checks
def _check_image_inputs(fname: str, labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate image-level labels and scores; return them as 1-D int8 and float64 arrays."""
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise ConfigError(
            f"{fname} needs 1-D labels and scores, got shapes {tuple(y.shape)} and {tuple(s.shape)}"
        )
    if y.size == 0 or s.size == 0:
        raise ConfigError(f"{fname} got empty input (n_labels={y.size}, n_scores={s.size})")
    if y.size != s.size:
        raise ConfigError(f"{fname} got {y.size} labels but {s.size} scores; lengths must match")
    if y.dtype != bool:
        numeric = np.issubdtype(y.dtype, np.number)
        ok = np.isin(y, (0, 1)) if numeric else np.zeros(y.shape, dtype=bool)
        if not ok.all():
            bad = (np.unique(y[~ok]) if numeric else y[~ok])[:5].tolist()
            raise ConfigError(f"{fname} needs labels of 0 (normal) or 1 (anomalous), got values {bad}")
    y = y.astype(np.int8)
    try:
        s = s.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{fname} needs numeric scores, got dtype {s.dtype}") from exc
    n_bad = int(np.count_nonzero(~np.isfinite(s)))
    if n_bad:
        raise ConfigError(f"{fname} got {n_bad} NaN or inf score(s) out of {s.size}; scores must be finite")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        only = 1 if n_pos else 0
        raise ConfigError(
            f"{fname} needs both normal and anomalous samples, got only label {only} (n={y.size})"
        )
    return y, s


def _check_threshold(fname: str, threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{fname} needs a numeric threshold, got {threshold!r}") from exc
    if not math.isfinite(t):
        raise ConfigError(f"{fname} needs a finite threshold, got {t}")
    return t


def _check_fpr_limit(fname: str, fpr_limit: float) -> float:
    try:
        limit = float(fpr_limit)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{fname} needs a numeric fpr_limit in (0, 1], got {fpr_limit!r}") from exc
    if not (0.0 < limit <= 1.0):  # also False for NaN
        raise ConfigError(f"{fname} needs fpr_limit in (0, 1], got {limit}")
    return limit


def _collect_pixels(
    fname: str, masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]
) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """Validate masks and maps and flatten them into one float32 score and one bool mask array.

    Returns:
        ``(shapes, scores, defect)``: the (h_i, w_i) of each image, the concatenated float32 scores
        of shape (N,) and the concatenated bool ground truth of shape (N,), N = sum of h_i * w_i.
    """
    if masks is None or maps is None:
        raise ConfigError(
            f"{fname} needs both masks and maps, got masks={masks is not None}, maps={maps is not None}"
        )
    n_masks, n_maps = len(masks), len(maps)
    if n_masks == 0 or n_maps == 0:
        raise ConfigError(f"{fname} got empty input (n_masks={n_masks}, n_maps={n_maps})")
    if n_masks != n_maps:
        raise ConfigError(f"{fname} got {n_masks} masks but {n_maps} maps; lengths must match")

    mask_arrays, map_arrays, shapes = [], [], []
    for i, (mask, amap) in enumerate(zip(masks, maps, strict=True)):
        m, a = np.asarray(mask), np.asarray(amap)
        if m.ndim != 2:
            raise ConfigError(f"{fname}: masks[{i}] must be 2-D (h, w), got shape {tuple(m.shape)}")
        if m.shape != a.shape:
            raise ConfigError(
                f"{fname}: maps[{i}] has shape {tuple(a.shape)} but masks[{i}] has shape {tuple(m.shape)}; "
                "each map must match its mask"
            )
        if m.dtype != bool and not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
            raise ConfigError(
                f"{fname}: masks[{i}] must be bool (or 0/1), got dtype {m.dtype} with other values; "
                "threshold it to bool first"
            )
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ConfigError(f"{fname}: maps[{i}] must be real-valued, got dtype {a.dtype}")
        mask_arrays.append(m)
        map_arrays.append(a)
        shapes.append((int(m.shape[0]), int(m.shape[1])))

    total = sum(h * w for h, w in shapes)
    scores = np.empty(total, dtype=np.float32)
    defect = np.empty(total, dtype=bool)
    start = 0
    for i, (m, a, (h, w)) in enumerate(zip(mask_arrays, map_arrays, shapes, strict=True)):
        stop = start + h * w
        seg = scores[start:stop]
        seg[:] = a.ravel()  # casts to float32 in place, no float64 copy of the whole set
        defect[start:stop] = m.ravel()
        n_bad = int(np.count_nonzero(~np.isfinite(seg)))
        if n_bad:
            raise ConfigError(
                f"{fname}: maps[{i}] has {n_bad} NaN or inf value(s) (or values beyond float32 range); "
                "maps must be finite"
            )
        start = stop
    if total == 0:
        raise ConfigError(f"{fname} got {n_masks} masks with no pixels at all")
    return shapes, scores, defect


# ------------------------------------------------------------------------------------------- image
def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of image-level scores (ties count as half).

    Args:
        labels: (n,) ground truth, 1 anomalous, 0 normal.
        scores: (n,) anomaly scores, higher = more anomalous.

    Returns:
        The AUROC in [0, 1].

    Raises:
        ConfigError: empty or mismatched inputs, labels other than 0/1, a single class, or
            non-finite scores.
    """
    y, s = _check_image_inputs("image_auroc", labels, scores)
    return float(roc_auc_score(y, s))


def f1_max(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Best F1 over all thresholds, and the threshold achieving it.

    Only thresholds equal to an observed score are considered (these cover every distinct decision
    rule). When several thresholds reach the same best F1, the lowest of them is returned.

    Args:
        labels: (n,) ground truth, 1 anomalous, 0 normal.
        scores: (n,) anomaly scores, higher = more anomalous.

    Returns:
        ``(best_f1, threshold)``; predicting ``score >= threshold`` as anomalous gives ``best_f1``.

    Raises:
        ConfigError: as for :func:`image_auroc`.
    """
    y, s = _check_image_inputs("f1_max", labels, scores)
    precision, recall, thresholds = precision_recall_curve(y, s)
    # precision[k], recall[k] belong to thresholds[k]; the final (1, 0) point has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def f1_at(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """F1 of the rule ``score >= threshold`` (0 when nothing is predicted anomalous).

    Args:
        labels: (n,) ground truth, 1 anomalous, 0 normal.
        scores: (n,) anomaly scores, higher = more anomalous.
        threshold: finite decision threshold.

    Returns:
        The F1 score in [0, 1].

    Raises:
        ConfigError: as for :func:`image_auroc`, or a non-finite threshold.
    """
    y, s = _check_image_inputs("f1_at", labels, scores)
    t = _check_threshold("f1_at", threshold)
    return float(f1_score(y, (s >= t).astype(np.int8), zero_division=0.0))


# ------------------------------------------------------------------------------------------- pixel
def rates_at(labels: ArrayLike, scores: ArrayLike, threshold: float) -> tuple[float, float]:
    """(false-reject rate, recall) at a threshold: the share of good (label 0) and of anomalous (label 1)
    images with ``score >= threshold``."""
    y, s = _check_image_inputs("rates_at", labels, scores)
    t = _check_threshold("rates_at", threshold)
    rejected = s >= t
    return float(rejected[y == 0].mean()), float(rejected[y == 1].mean())


def recall_at_false_reject_rate(labels: ArrayLike, scores: ArrayLike, rate: float) -> float:
    """The recall of the lowest threshold that rejects at most a share `rate` of the good images.

    With n good images, at most floor(rate * n) of them may score at or above the threshold, so it sits
    just above the (floor(rate * n) + 1)-th highest good score: recall is the share of anomalous images
    scoring strictly above that good score.
    """
    y, s = _check_image_inputs("recall_at_false_reject_rate", labels, scores)
    if not 0 <= rate < 1:
        raise ConfigError(f"recall_at_false_reject_rate: rate must be in [0, 1), got {rate!r}")
    good = np.sort(s[y == 0])[::-1]
    allowed = int(np.floor(rate * good.size + 1e-9))
    return float((s[y == 1] > good[allowed]).mean())


def _pixel_auroc_flat(fname: str, scores: np.ndarray, defect: np.ndarray) -> float:
    n_def = int(np.count_nonzero(defect))
    if n_def == 0 or n_def == defect.size:
        what = "no defect pixels" if n_def == 0 else "only defect pixels"
        raise ConfigError(
            f"{fname} needs both normal and defect pixels, the masks have {what} (n_pixels={defect.size})"
        )
    return float(roc_auc_score(defect, scores))


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    """Pixel-level AUROC over all pixels of all images pooled together.

    Args:
        masks: per image, an (h_i, w_i) bool ground truth, True = defect pixel.
        maps: per image, an (h_i, w_i) real anomaly map, same shape as its mask.

    Returns:
        The AUROC in [0, 1].

    Raises:
        ConfigError: empty or mismatched lists, a map whose shape differs from its mask, non-finite
            map values, or masks with no defect pixels (or no normal pixels).
    """
    _, scores, defect = _collect_pixels("pixel_auroc", masks, maps)
    return _pixel_auroc_flat("pixel_auroc", scores, defect)


def _aupro_flat(
    fname: str, shapes: list[tuple[int, int]], scores: np.ndarray, defect: np.ndarray, fpr_limit: float
) -> float:
    """AUPRO on flattened inputs, following MVTec's reference ``compute_pro`` (see :func:`aupro`)."""
    n_pix = scores.size
    n_normal = n_pix - int(np.count_nonzero(defect))
    if n_normal == 0:
        raise ConfigError(f"{fname} needs normal pixels to measure the FPR, but every pixel is a defect")

    # Connected defect regions (8-connectivity) of each mask, numbered 1..n_regions across images.
    region = np.zeros(n_pix, dtype=np.int32)
    sizes = [np.zeros(1, dtype=np.int64)]  # index 0: normal pixels, weight 0
    n_regions, start = 0, 0
    for h, w in shapes:
        stop = start + h * w
        seg = region[start:stop]
        n = ndimage.label(
            defect[start:stop].reshape(h, w), structure=_EIGHT_CONNECTED, output=seg.reshape(h, w)
        )
        if n:
            sizes.append(np.bincount(seg, minlength=n + 1)[1:].astype(np.int64))
            np.add(seg, n_regions, out=seg, where=seg > 0)
            n_regions += n
        start = stop
    if n_regions == 0:
        raise ConfigError(f"{fname} needs at least one defect region, but no mask has a defect pixel")
    region_size = np.concatenate(sizes)
    weight = np.zeros(n_regions + 1, dtype=np.float64)
    weight[1:] = 1.0 / (region_size[1:] * n_regions)

    # Sort all pixels by score, descending.
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    sorted_region = region[order]
    del order, region

    # Keep the last position of each run of tied scores.
    ends = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    ends = np.append(ends, n_pix - 1)
    del sorted_scores
    anom_pos = np.flatnonzero(sorted_region)  # positions of defect pixels in sorted order
    # Number of defect pixels among the first (end + 1) sorted pixels.
    n_anom_upto = np.searchsorted(anom_pos, ends, side="right")
    fpr = (ends + 1 - n_anom_upto) / n_normal

    # Only the points up to the first one past fpr_limit are needed.
    cut = min(int(np.searchsorted(fpr, fpr_limit, side="right")) + 1, fpr.size)
    fpr, n_anom_upto = fpr[:cut], n_anom_upto[:cut]
    n_anom_needed = int(n_anom_upto[-1])
    cum_pro = np.cumsum(weight[sorted_region[anom_pos[:n_anom_needed]]])
    del sorted_region, anom_pos
    pro = np.zeros(cut, dtype=np.float64)
    hit = n_anom_upto > 0
    pro[hit] = cum_pro[n_anom_upto[hit] - 1]

    x = np.concatenate(([0.0], fpr))
    y = np.concatenate(([0.0], pro))
    # Trapezoid rule up to fpr_limit, interpolating linearly at fpr_limit (MVTec's `trapezoid`).
    idx = int(np.searchsorted(x, fpr_limit, side="right"))  # x[:idx] <= fpr_limit < x[idx]
    area = float(np.trapezoid(y[:idx], x[:idx])) if idx > 1 else 0.0
    x0, y0 = x[idx - 1], y[idx - 1]
    if x0 < fpr_limit:  # the last fpr is 1.0 >= fpr_limit, so x[idx] exists here
        y_lim = y0 + (y[idx] - y0) * (fpr_limit - x0) / (x[idx] - x0)
        area += 0.5 * (y0 + y_lim) * (fpr_limit - x0)
    logger.debug(
        "%s: %d pixels, %d normal, %d regions, %d curve points", fname, n_pix, n_normal, n_regions, x.size
    )
    return area / fpr_limit


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region overlap (PRO) curve up to ``fpr_limit`` (MVTec AD).

    Regions are the 8-connected components of each ground-truth mask. At a threshold t, the FPR is
    the fraction of all normal pixels (all images) with map >= t, and the PRO is the mean over all
    regions (all images) of the fraction of the region's pixels with map >= t. As in MVTec's
    reference ``compute_pro``, the curve has one point per distinct score (plus (0, 0)) and is
    integrated with the trapezoid rule up to ``fpr_limit``, interpolating linearly there. The area
    is divided by ``fpr_limit`` so a perfect map scores 1.0. Cost: one O(N log N) sort.

    Args:
        masks: per image, an (h_i, w_i) bool ground truth, True = defect pixel.
        maps: per image, an (h_i, w_i) real anomaly map, same shape as its mask.
        fpr_limit: upper FPR integration limit, in (0, 1].

    Returns:
        The normalised AUPRO in [0, 1].

    Raises:
        ConfigError: as for :func:`pixel_auroc`; also when no mask has a defect region, no pixel is
            normal, or ``fpr_limit`` is outside (0, 1].
    """
    limit = _check_fpr_limit("aupro", fpr_limit)
    shapes, scores, defect = _collect_pixels("aupro", masks, maps)
    return _aupro_flat("aupro", shapes, scores, defect, limit)


# ------------------------------------------------------------------------------------------ report
def evaluate(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    masks: Sequence[np.ndarray] | None = None,
    maps: Sequence[np.ndarray] | None = None,
    fpr_limit: float = 0.3,
) -> dict[str, float | int | str | None]:
    """Compute all image-level and, when masks are given, pixel-level metrics.

    Args:
        labels: (n,) image ground truth, 1 anomalous, 0 normal.
        scores: (n,) image anomaly scores, higher = more anomalous.
        threshold: operating threshold for ``image_f1`` (``score >= threshold`` is anomalous).
        masks: optional, n bool (h_i, w_i) ground-truth masks, one per image.
        maps: the n (h_i, w_i) anomaly maps; required when ``masks`` is given.
        fpr_limit: AUPRO integration limit, in (0, 1].

    Returns:
        A dict with keys ``image_auroc``, ``image_f1_max``, ``image_f1_max_threshold``, ``image_f1``,
        ``threshold``, ``pixel_auroc``, ``aupro``, ``pixel_note``, ``n_images``, ``n_anomalous``.
        The pixel metrics are None, with the reason in ``pixel_note``, when there are no masks or
        the masks have no defect pixels; ``pixel_note`` is None when they were computed.

    Raises:
        ConfigError: any invalid input (see the individual metrics), maps missing while masks are
            given, or a number of masks different from the number of images.
    """
    y, s = _check_image_inputs("evaluate", labels, scores)
    t = _check_threshold("evaluate", threshold)
    limit = _check_fpr_limit("evaluate", fpr_limit)
    best_f1, best_t = f1_max(y, s)
    result: dict[str, float | int | str | None] = {
        "image_auroc": image_auroc(y, s),
        "image_f1_max": best_f1,
        "image_f1_max_threshold": best_t,
        "image_f1": f1_at(y, s, t),
        "threshold": t,
        "pixel_auroc": None,
        "aupro": None,
        "pixel_note": None,
        "n_images": int(y.size),
        "n_anomalous": int(y.sum()),
    }
    if masks is None:
        result["pixel_note"] = "no ground-truth masks"
        return result
    if maps is None:
        raise ConfigError("evaluate got masks but no maps; pass one anomaly map per mask")
    if len(masks) != y.size:
        raise ConfigError(f"evaluate got {len(masks)} masks for {y.size} images; pass one mask per image")
    shapes, pix_scores, defect = _collect_pixels("evaluate", masks, maps)
    if not defect.any():
        result["pixel_note"] = "masks have no defect pixels"
        return result
    result["pixel_auroc"] = _pixel_auroc_flat("pixel_auroc", pix_scores, defect)
    result["aupro"] = _aupro_flat("aupro", shapes, pix_scores, defect, limit)
    return result


# ------------------------------------------------------------------------------------------- audio
__all__ += ["dcase_pauc", "audio_auc_pauc"]


def dcase_pauc(labels: ArrayLike, scores: ArrayLike, max_fpr: float = 0.1) -> float:
    """Partial AUC as DCASE Task 2 defines it: the ROC area over FPR in [0, max_fpr], divided by max_fpr.

    The ROC curve (ties as one diagonal step, as in the full AUC) is integrated with the trapezoid rule
    and interpolated linearly at ``max_fpr``. When ``max_fpr * n_normal`` is an integer and scores have
    no ties, this is the task description's count: among the ``max_fpr * n_normal`` highest-scoring
    normal clips, the fraction of (normal, anomalous) pairs the anomalous clip out-scores. Unlike
    ``sklearn.metrics.roc_auc_score(..., max_fpr=p)``, the value is *not* McClish-standardised, so a
    random scorer gets about ``max_fpr / 2`` (0.05), not 0.5.

    Args:
        labels: (n,) 1 anomalous, 0 normal.
        scores: (n,) anomaly scores, higher = more anomalous.
        max_fpr: upper end of the FPR range, in (0, 1].

    Returns:
        The partial AUC in [0, 1]; 1.0 when every anomalous clip out-scores every normal one.

    Raises:
        ConfigError: invalid labels or scores (see :func:`image_auroc`) or ``max_fpr`` outside (0, 1].
    """
    from sklearn.metrics import roc_curve

    limit = _check_fpr_limit("dcase_pauc", max_fpr)
    y, s = _check_image_inputs("dcase_pauc", labels, scores)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    stop = int(np.searchsorted(fpr, limit, side="right"))  # points with fpr <= limit
    x, v = fpr[:stop], tpr[:stop]
    if x[-1] < limit:  # a point with fpr > limit exists because the last fpr is 1.0
        t_lim = v[-1] + (tpr[stop] - v[-1]) * (limit - x[-1]) / (fpr[stop] - x[-1])
        x, v = np.append(x, limit), np.append(v, t_lim)
    return float(np.trapezoid(v, x) / limit)


def audio_auc_pauc(
    labels: ArrayLike,
    scores: ArrayLike,
    sections: ArrayLike,
    domains: ArrayLike | None = None,
    max_fpr: float = 0.1,
) -> dict[str, object]:
    """AUC and DCASE pAUC per machine id / section, their means and the DCASE 2022 harmonic mean.

    Without ``domains`` (DCASE 2020), each section gets the AUC and pAUC of its clips; ``hmean`` is the
    harmonic mean of all those AUCs and pAUCs. With ``domains`` (DCASE 2022), each section also gets
    ``auc_source`` and ``auc_target``: the AUC of that domain's normal clips against *all* anomalous
    clips of the section, as the DCASE 2022 task description defines it; ``hmean`` is then the
    harmonic mean of every per-domain AUC and every section's pAUC, the task's official score.

    Args:
        labels: (n,) 1 anomalous, 0 normal.
        scores: (n,) anomaly scores, higher = more anomalous.
        sections: (n,) machine id or section of each clip (e.g. "id_00", "section_00").
        domains: (n,) "source" or "target" per clip, or ``None``.
        max_fpr: pAUC limit, in (0, 1].

    Returns:
        ``{"sections": {name: {"auc", "pauc", "n_normal", "n_anomalous"[, "auc_source", "auc_target"]}},
        "mean_auc", "mean_pauc", "hmean", "max_fpr"}``; means are arithmetic over sections.

    Raises:
        ConfigError: lengths differ, a section lacks normal or anomalous clips, a domain value is not
            source/target, a domain lacks normal clips, or any check of :func:`dcase_pauc` fails.
    """
    from scipy.stats import hmean

    y, s = _check_image_inputs("audio_auc_pauc", labels, scores)
    groups = np.asarray(sections).astype(str)
    if groups.shape != y.shape:
        raise ConfigError(f"audio_auc_pauc got {groups.size} sections for {y.size} scores; lengths differ")
    dom = None if domains is None else np.asarray(domains).astype(str)
    if dom is not None:
        if dom.shape != y.shape:
            raise ConfigError(f"audio_auc_pauc got {dom.size} domains for {y.size} scores; lengths differ")
        bad = sorted(set(dom.tolist()) - {"source", "target"})
        if bad:
            raise ConfigError(f"audio_auc_pauc needs domains 'source' or 'target', got {bad[:5]}")
    per_section: dict[str, dict[str, float | int]] = {}
    hmean_terms: list[float] = []
    for name in sorted(set(groups.tolist())):
        member = groups == name
        fname = f"audio_auc_pauc (section {name})"
        ys, ss = _check_image_inputs(fname, y[member], s[member])
        entry: dict[str, float | int] = {
            "auc": float(roc_auc_score(ys, ss)),
            "pauc": dcase_pauc(ys, ss, max_fpr),
            "n_normal": int(np.count_nonzero(ys == 0)),
            "n_anomalous": int(ys.sum()),
        }
        if dom is None:
            hmean_terms += [entry["auc"], entry["pauc"]]
        else:
            for domain in ("source", "target"):
                keep = (ys == 1) | (dom[member] == domain)
                if not np.any(ys[keep] == 0):
                    raise ConfigError(f"{fname} has no normal clip in the {domain} domain")
                entry[f"auc_{domain}"] = float(roc_auc_score(ys[keep], ss[keep]))
                hmean_terms.append(entry[f"auc_{domain}"])
            hmean_terms.append(entry["pauc"])
        per_section[name] = entry
    terms = np.asarray(hmean_terms)
    return {
        "sections": per_section,
        "mean_auc": float(np.mean([e["auc"] for e in per_section.values()])),
        "mean_pauc": float(np.mean([e["pauc"] for e in per_section.values()])),
        "hmean": 0.0 if np.any(terms <= 0) else float(hmean(terms)),
        "max_fpr": float(max_fpr),
    }
