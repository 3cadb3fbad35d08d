"""Fréchet distance, KID-style MMD² and the copy rule against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.augment.metrics import (
    copy_statistics,
    frechet_distance,
    frechet_from_moments,
    kernel_distance,
    leave_one_out_nearest,
    mmd2_unbiased,
    nearest,
    polynomial_kernel,
)
from defectlens.errors import ConfigError, DataError


def test_frechet_of_diagonal_gaussians_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)  # 5 + 1 + 1 + 4
    assert frechet_from_moments(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)
    assert expected == pytest.approx(11.0)


def test_frechet_of_full_covariances_matches_the_trace_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = a @ a.T + np.eye(3), b @ b.T + np.eye(3)
    root = np.linalg.cholesky(s1)  # Tr((s1 s2)^1/2) = sum of sqrt of eigenvalues of L^T s2 L
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.linalg.eigvalsh(root.T @ s2 @ root)).sum()
    assert frechet_from_moments(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(expected)


def test_frechet_of_samples_identical_sets_is_zero_and_shift_adds_its_square():
    x = np.random.default_rng(1).normal(size=(200, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + np.array([3.0, 0, 0, 4.0])) == pytest.approx(25.0, abs=1e-6)


def test_mmd2_unbiased_by_hand_on_two_points_each():
    x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])
    # d = 2: k(u, v) = (u.v / 2 + 1)^3
    within_x = (1.0**3 + 1.0**3) / 2  # k(x1, x2) = (0 + 1)^3, both orders, over n(n-1) = 2
    within_y = (1.0**3 + 1.0**3) / 2  # k(y1, y2) = (0 + 1)^3
    cross = (1.5**3 + 1.0 + 1.5**3 + 1.0) / 4
    assert polynomial_kernel(x, y)[0, 0] == pytest.approx(1.5**3)
    assert mmd2_unbiased(x, y) == pytest.approx(within_x + within_y - 2 * cross)


def test_kernel_distance_is_near_zero_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same, same_std = kernel_distance(a, b, subsets=20, subset_size=100)
    shifted, _ = kernel_distance(a, b + 2.0, subsets=20, subset_size=100)
    assert abs(same) < 3 * same_std + 0.01 and shifted > 1.0 and same_std > 0
    with pytest.raises(ConfigError, match="subset_size"):
        kernel_distance(a, b, subset_size=1)


def test_nearest_and_leave_one_out_exclude_the_point_itself_not_its_duplicate():
    ref = np.array([[0.0], [1.0], [1.0], [5.0]])
    assert leave_one_out_nearest(ref).tolist() == [1.0, 0.0, 0.0, 4.0]
    distances, indices = nearest(ref, np.array([[4.0]]), k=2)
    assert distances.tolist() == [[1.0, 3.0]] and indices[0, 0] == 3
    with pytest.raises(DataError, match="shape"):
        leave_one_out_nearest(np.zeros((1, 3)))


def test_copy_statistics_rule():
    real = np.arange(1.0, 101.0)  # 5th percentile: 5.95
    copies = copy_statistics(np.zeros(10), real)
    assert copies.flagged and copies.close_fraction == 1.0 and copies.exact_copies == 10
    fresh = copy_statistics(np.linspace(3.0, 100.0, 40), real)
    assert not fresh.flagged and fresh.close_fraction == pytest.approx(0.05)  # 3.0 and 5.49
    assert fresh.threshold == pytest.approx(5.95)
    with pytest.raises(ConfigError, match="percentile"):
        copy_statistics(real, real, percentile=0)
