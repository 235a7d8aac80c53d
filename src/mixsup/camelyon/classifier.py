"""The node classifier: a random forest on heatmap features, trained with cross-validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold

from mixsup.labels.stages import NODE_CLASSES


@dataclass
class NodeForest:
    feature_names: list[str]
    models: list[RandomForestClassifier]
    cv_predictions: list[str]  # out-of-fold class of every training slide

    def predict_proba(self, rows: list[dict[str, float]]) -> np.ndarray:
        """(n, 4) probabilities in NODE_CLASSES order, averaged over the fold models."""
        x = _matrix(rows, self.feature_names)
        probs = np.zeros((len(rows), len(NODE_CLASSES)))
        for m in self.models:
            p = m.predict_proba(x)
            for j, c in enumerate(m.classes_):
                probs[:, NODE_CLASSES.index(c)] += p[:, j]
        return probs / len(self.models)

    def predict(self, rows: list[dict[str, float]]) -> list[str]:
        return [NODE_CLASSES[i] for i in self.predict_proba(rows).argmax(axis=1)]


def _matrix(rows: list[dict[str, float]], names: list[str]) -> np.ndarray:
    return np.array([[r.get(n, 0.0) for n in names] for r in rows], dtype=np.float64)


def train_node_forest(rows: list[dict[str, float]], classes: list[str], folds: int = 5,
                      seed: int = 0, n_estimators: int = 300) -> NodeForest:
    names = sorted(rows[0])
    x, y = _matrix(rows, names), np.asarray(classes)
    smallest = min(np.unique(y, return_counts=True)[1])
    k = max(2, min(folds, int(smallest))) if len(set(classes)) > 1 else 1
    models, oof = [], np.empty(len(y), dtype=object)
    if k == 1:
        m = RandomForestClassifier(n_estimators=n_estimators, random_state=seed,
                                   class_weight="balanced").fit(x, y)
        return NodeForest(names, [m], list(m.predict(x)))
    for fold, (tr, te) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed)
                                    .split(x, y)):
        m = RandomForestClassifier(n_estimators=n_estimators, random_state=seed + fold,
                                   class_weight="balanced").fit(x[tr], y[tr])
        oof[te] = m.predict(x[te])
        models.append(m)
    return NodeForest(names, models, [str(c) for c in oof])
