"""The seed-spread helpers of eoslib.plotting against curves known in closed form (float64)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from eoslib import plotting as P


def _table():
    # seed 0: y = 1 + 2x on x ∈ [0, 2] (5 points); seed 1: y = 3 − x on x ∈ [0, 1] (3 points, different grid)
    x0, x1 = np.linspace(0, 2, 5), np.linspace(0, 1, 3)
    return pd.DataFrame({"seed": [0] * 5 + [1] * 3, "t": np.r_[x0, x1], "y": np.r_[1 + 2 * x0, 3 - x1]})


def test_seed_grid_interpolates_each_seed_and_leaves_gaps():
    grid, Y = P.seed_grid(_table(), "t", "y")
    np.testing.assert_array_equal(grid, np.unique(np.r_[np.linspace(0, 2, 5), np.linspace(0, 1, 3)]))
    np.testing.assert_allclose(Y[0], 1 + 2 * grid, rtol=0, atol=1e-14)  # linear curves interpolate exactly
    inside = grid <= 1
    np.testing.assert_allclose(Y[1, inside], 3 - grid[inside], rtol=0, atol=1e-14)
    assert np.isnan(Y[1, ~inside]).all()  # seed 1 stops at x = 1


def test_seed_grid_log_is_exact_for_exponentials():
    x = np.array([0.0, 1.0, 3.0])
    df = pd.DataFrame({"seed": 0, "t": x, "y": np.exp(0.7 * x)})
    df2 = pd.concat([df, pd.DataFrame({"seed": 1, "t": [0.5, 2.0], "y": np.exp(0.7 * np.array([0.5, 2.0]))})])
    grid, Y = P.seed_grid(df2, "t", "y", log=True)
    np.testing.assert_allclose(Y[0], np.exp(0.7 * grid), rtol=1e-13)  # log-linear interpolation of e^(0.7x)


def test_seed_spread_median_and_band_over_the_common_range():
    fig, ax = plt.subplots()
    line = P.seed_spread(ax, _table(), "t", "y", log=False, label="m")
    x, y = line.get_data()
    assert x.max() == 1.0  # the median stops where seed 1 stops
    np.testing.assert_allclose(y, ((1 + 2 * x) + (3 - x)) / 2, atol=1e-14)  # median of two = their mean
    band = ax.collections[0].get_paths()[0].vertices
    assert np.isclose(band[:, 1].min(), 1.0) and np.isclose(band[:, 1].max(), 3.0)  # min–max range of the seeds
    assert len(ax.lines) == 3  # two thin seed lines and the median
    plt.close(fig)


def test_seed_spread_single_seed_is_one_line():
    fig, ax = plt.subplots()
    df = _table()
    line = P.seed_spread(ax, df[df.seed == 0], "t", "y")
    np.testing.assert_allclose(line.get_ydata(), 1 + 2 * np.linspace(0, 2, 5))
    assert len(ax.lines) == 1 and not ax.collections
    plt.close(fig)
