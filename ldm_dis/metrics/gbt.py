"""scikit-learn's GradientBoostingClassifier with the trees of a boosting stage fitted in a thread pool.

A multi-class GBT fits, at every stage, one regression tree per class on that stage's negative
gradient; the trees of one stage depend on each other only through the random state they draw in
turn (one ``randint(0, RAND_R_MAX)`` each, which seeds the splitter's feature order). Here each tree
gets a copy of the random state as it would stand when sklearn's loop reached it, the trees are fitted
concurrently (sklearn's tree builder releases the GIL), and the leaf line search and the prediction
update then run in sklearn's order with sklearn's own ``_update_terminal_regions``. The fitted model
is therefore the one sklearn fits, bit for bit (``tests/metrics/test_gbt.py`` checks importances and
predictions against the stock class).

Why not processes per factor only: DCI's six Shapes3D factors have 15, 10, 10, 10, 8 and 4 classes, so
any split of whole factors over two cores leaves one core idle for 1/57 of the work at best, and a
15-class factor alone is half the critical path of a factor-level split. Sharing one pool of tree
workers between the factors' boosting loops keeps every core busy until the last stage.

This overrides sklearn's private ``_fit_stage``. Where its signature differs from the one handled here,
or with subsampling or sparse input, the stock method runs.
"""

from __future__ import annotations

import inspect
from concurrent.futures import Executor
from typing import Optional

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.tree import DecisionTreeRegressor

try:  # a private sklearn helper; without it the stock, serial stage runs
    from sklearn.ensemble._gb import _update_terminal_regions
except ImportError:  # pragma: no cover - depends on the sklearn build
    _update_terminal_regions = None

_RAND_R_MAX = 2147483647  # sklearn/tree/_utils.pxd: the bound of the splitter's seed draw
_STAGE_PARAMS = ["self", "i", "X", "y", "raw_predictions", "sample_weight", "sample_mask", "random_state",
                 "X_csc", "X_csr"]
_SUPPORTED = (
    _update_terminal_regions is not None  # module-level since sklearn 1.4, with the sklearn._loss losses used below
    and list(inspect.signature(GradientBoostingClassifier._fit_stage).parameters) == _STAGE_PARAMS
    and list(inspect.signature(_update_terminal_regions).parameters)[:4] == ["loss", "tree", "X", "y"]
)


class PooledGradientBoostingClassifier(GradientBoostingClassifier):
    """GradientBoostingClassifier (same parameters, same fitted model) whose per-stage trees run on
    ``tree_pool``, an executor shared with other boosting loops; ``None`` fits them in this thread."""

    tree_pool: Optional[Executor] = None

    def _fit_stage(self, i, X, y, raw_predictions, sample_weight, sample_mask, random_state,
                   X_csc=None, X_csr=None):
        if (self.tree_pool is None or not _SUPPORTED or self.subsample < 1.0 or X_csc is not None
                or X_csr is not None):
            return super()._fit_stage(i, X, y, raw_predictions, sample_weight, sample_mask, random_state,
                                      X_csc=X_csc, X_csr=X_csr)
        neg_gradient = -self._loss.gradient(y_true=y, raw_prediction=raw_predictions, sample_weight=None)
        neg_g_view = neg_gradient.reshape((-1, 1)) if neg_gradient.ndim == 1 else neg_gradient
        fits = []
        for k in range(self.n_trees_per_iteration_):
            tree = DecisionTreeRegressor(
                criterion="squared_error", splitter="best", max_depth=self.max_depth,
                min_samples_split=self.min_samples_split, min_samples_leaf=self.min_samples_leaf,
                min_weight_fraction_leaf=self.min_weight_fraction_leaf,
                min_impurity_decrease=self.min_impurity_decrease, max_features=self.max_features,
                max_leaf_nodes=self.max_leaf_nodes, random_state=_state_copy(random_state),
                ccp_alpha=self.ccp_alpha,
            )
            random_state.randint(0, _RAND_R_MAX)  # the draw this tree's splitter makes from its copy
            fits.append((tree, self.tree_pool.submit(
                tree.fit, X, neg_g_view[:, k], sample_weight=sample_weight, check_input=False)))
        for k, (tree, fitted) in enumerate(fits):
            fitted.result()
            y_k = np.array(y == k, dtype=np.float64) if self._loss.is_multiclass else y
            _update_terminal_regions(self._loss, tree.tree_, X, y_k, neg_g_view[:, k], raw_predictions,
                                     sample_weight, sample_mask, learning_rate=self.learning_rate, k=k)
            self.estimators_[i, k] = tree
        return raw_predictions


def _state_copy(random_state: np.random.RandomState) -> np.random.RandomState:
    copy = np.random.RandomState()
    copy.set_state(random_state.get_state())
    return copy
