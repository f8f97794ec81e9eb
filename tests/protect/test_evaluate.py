"""SSIM/PSNR against scikit-image and a slow reference; matching against hand-worked cases."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from leam.protect.evaluate import box_iou, match_scores, psnr, ssim, visible_change


def _images(shape=(23, 31, 3), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, shape), 0, 255).astype(np.uint8)
    return a, b


def _slow_ssim(a: np.ndarray, b: np.ndarray, win: int = 7) -> float:
    """SSIM written out window by window (Wang et al. 2004 with scikit-image's defaults: 7 x 7 uniform
    window, sample covariances, K1 = 0.01, K2 = 0.03, L = 255, mean over the windows fully inside, and
    over channels)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    n = win * win
    out = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        vals = []
        for i in range(x.shape[0] - win + 1):
            for j in range(x.shape[1] - win + 1):
                px, py = x[i:i + win, j:j + win].ravel(), y[i:i + win, j:j + win].ravel()
                mx, my = px.mean(), py.mean()
                vx = ((px - mx) ** 2).sum() / (n - 1)
                vy = ((py - my) ** 2).sum() / (n - 1)
                cxy = ((px - mx) * (py - my)).sum() / (n - 1)
                vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        out.append(np.mean(vals))
    return float(np.mean(out))


def test_psnr_matches_scikit_image():
    a, b = _images()
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)
    assert psnr(a, a) == float("inf")


def test_ssim_matches_scikit_image_and_a_slow_reference():
    a, b = _images()
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=255, channel_axis=2), rel=1e-10)
    assert ssim(a, b) == pytest.approx(_slow_ssim(a, b), rel=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_visible_change_counts_what_changed():
    a = np.full((40, 50, 3), 100, np.uint8)
    b = a.copy()
    b[10, 20] = (103, 100, 96)  # one pixel, L2 = 5, L∞ = 4
    v = visible_change(a, b, (15, 5, 30, 25))
    assert v["changed_pixels"] == 1 and v["l2"] == pytest.approx(5.0) and v["linf"] == 4
    assert v["psnr"] == pytest.approx(10 * np.log10(255**2 / (25 / (40 * 50 * 3))))
    assert v["psnr_face"] == pytest.approx(10 * np.log10(255**2 / (25 / (20 * 15 * 3))))
    with pytest.raises(ValueError, match="one shape"):
        visible_change(a, b[:-1], (0, 0, 5, 5))


def test_box_iou_by_hand():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_match_scores_at_the_models_threshold():
    euclid = SimpleNamespace(spec=SimpleNamespace(threshold=0.6, threshold_metric="euclidean"))
    e = np.array([1.0, 0.0])
    refs = np.array([[1.0, 0.5], [0.0, 1.0]])  # distances 0.5 (same) and √2 (different)
    s = match_scores(euclid, e, refs)
    assert s["match"] == 0.5 and s["match_any"] and s["distance_min"] == pytest.approx(0.5)
    assert s["cosine"] == pytest.approx(0.5 / np.hypot(0.5, 0.75))  # to the mean reference (0.5, 0.75)
    cos_model = SimpleNamespace(spec=SimpleNamespace(threshold=0.9, threshold_metric="cosine"))
    s = match_scores(cos_model, e, refs)  # cosines 0.894 and 0: neither above 0.9
    assert s["match"] == 0.0 and not s["match_any"]
