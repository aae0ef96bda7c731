"""The pooled GBT is sklearn's GradientBoostingClassifier, bit for bit, whatever runs its trees."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from ldm_dis.metrics import gbt
from ldm_dis.metrics.gbt import PooledGradientBoostingClassifier


def _data(classes: int, discrete: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=400)
    x = rng.normal(size=(400, 5)) + y[:, None] * np.array([1.0, 0.5, 0.0, 0.0, 0.2])
    if discrete:  # few distinct values: many tied splits, decided by the trees' random feature order
        x = np.round(x)
    return np.asfortranarray(x, dtype=np.float32), y


def _assert_same_model(ours, stock, x):
    np.testing.assert_array_equal(ours.feature_importances_, stock.feature_importances_)
    np.testing.assert_array_equal(ours.decision_function(x), stock.decision_function(x))
    np.testing.assert_array_equal(ours.predict(x), stock.predict(x))
    for a, b in zip(ours.estimators_.ravel(), stock.estimators_.ravel()):
        np.testing.assert_array_equal(a.tree_.feature, b.tree_.feature)
        np.testing.assert_array_equal(a.tree_.threshold, b.tree_.threshold)
        np.testing.assert_array_equal(a.tree_.value, b.tree_.value)


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("discrete", [False, True])
def test_pooled_fit_equals_stock_sklearn(classes, discrete):
    assert gbt._SUPPORTED, "sklearn's _fit_stage changed: the pooled path would silently fall back"
    x, y = _data(classes, discrete)
    stock = GradientBoostingClassifier(n_estimators=20, random_state=3).fit(x, y)
    with ThreadPoolExecutor(2) as pool:
        ours = PooledGradientBoostingClassifier(n_estimators=20, random_state=3)
        ours.tree_pool = pool
        ours.fit(x, y)
    _assert_same_model(ours, stock, x)


def test_shared_pool_between_concurrent_loops_changes_nothing():
    data = [_data(k, discrete=True, seed=k) for k in (3, 4, 6)]
    stock = [GradientBoostingClassifier(n_estimators=10, random_state=k).fit(x, y) for k, (x, y) in enumerate(data)]

    def fit(k, pool):
        model = PooledGradientBoostingClassifier(n_estimators=10, random_state=k)
        model.tree_pool = pool
        return model.fit(*data[k])

    with ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(3) as loops:
        ours = list(loops.map(lambda k: fit(k, pool), range(3)))
    for (x, _), a, b in zip(data, ours, stock):
        _assert_same_model(a, b, x)


def test_no_pool_is_the_stock_stage():
    x, y = _data(4, discrete=False)
    stock = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(x, y)
    _assert_same_model(PooledGradientBoostingClassifier(n_estimators=5, random_state=0).fit(x, y), stock, x)
