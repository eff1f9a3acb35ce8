"""Writes scikit-learn-gallery-like notebooks for bench/real_notebooks.py, each in a plain and a
``%%track`` variant (every cell under ``%%track``; the first cell ``%load_ext nbops`` and
``%track start``). Bundled datasets and generators only: downloads are impossible here.

    python bench/notebooks/make.py [OUT_DIR]      # default: bench/notebooks/generated

Writes OUT_DIR/NN_name.plain.ipynb and OUT_DIR/NN_name.track.ipynb. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEAD = """import warnings
warnings.filterwarnings("ignore")
import numpy as np
import matplotlib.pyplot as plt
"""

DATA = {
    "iris": "from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)",
    "digits": "from sklearn.datasets import load_digits\nX, y = load_digits(return_X_y=True)",
    "wine": "from sklearn.datasets import load_wine\nX, y = load_wine(return_X_y=True)",
    "cancer": "from sklearn.datasets import load_breast_cancer\n"
    "X, y = load_breast_cancer(return_X_y=True)",
    "blobs": "from sklearn.datasets import make_blobs\n"
    "n_samples = 1500\nX, y = make_blobs(n_samples=n_samples, centers=4, random_state=0)",
    "classif": "from sklearn.datasets import make_classification\nn_samples = 2000\n"
    "X, y = make_classification(n_samples=n_samples, n_features=20, n_informative=8, "
    "random_state=0)",
}
REGRESSION = {
    "diabetes": "from sklearn.datasets import load_diabetes\nX, y = load_diabetes(return_X_y=True)",
    "regr": "from sklearn.datasets import make_regression\nn_samples = 1500\n"
    "X, y = make_regression(n_samples=n_samples, n_features=15, noise=10.0, random_state=0)",
}

SPLIT = """from sklearn.model_selection import train_test_split
test_size = 0.25
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=0)
print(X_train.shape, X_test.shape)"""

MODELS = {  # name: (import, constructor, the settings cell lines)
    "logreg": (
        "from sklearn.linear_model import LogisticRegression",
        "LogisticRegression(C=C, max_iter=max_iter)",
        "C = 1.0\nmax_iter = 500",
    ),
    "svc": ("from sklearn.svm import SVC", "SVC(C=C, gamma=gamma)", "C = 1.0\ngamma = 'scale'"),
    "forest": (
        "from sklearn.ensemble import RandomForestClassifier",
        "RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=0)",
        "n_estimators = 100\nmax_depth = 8",
    ),
    "knn": (
        "from sklearn.neighbors import KNeighborsClassifier",
        "KNeighborsClassifier(n_neighbors=n_neighbors)",
        "n_neighbors = 5",
    ),
    "tree": (
        "from sklearn.tree import DecisionTreeClassifier",
        "DecisionTreeClassifier(max_depth=max_depth, random_state=0)",
        "max_depth = 5",
    ),
    "gboost": (
        "from sklearn.ensemble import HistGradientBoostingClassifier",
        "HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate)",
        "max_iter = 100\nlearning_rate = 0.1",
    ),
}
REGRESSORS = {
    "ridge": ("from sklearn.linear_model import Ridge", "Ridge(alpha=alpha)", "alpha = 1.0"),
    "gbr": (
        "from sklearn.ensemble import GradientBoostingRegressor",
        "GradientBoostingRegressor(n_estimators=n_estimators, random_state=0)",
        "n_estimators = 100",
    ),
    "rfr": (
        "from sklearn.ensemble import RandomForestRegressor",
        "RandomForestRegressor(n_estimators=n_estimators, random_state=0)",
        "n_estimators = 80",
    ),
}


def classifier_cells(data: str, model: str, heavy: bool) -> list[str]:
    imp, ctor, settings = MODELS[model]
    cells = [
        HEAD + DATA[data],
        SPLIT,
        f"{imp}\nfrom sklearn.pipeline import make_pipeline\n"
        f"from sklearn.preprocessing import StandardScaler\n{settings}\n"
        f"clf = make_pipeline(StandardScaler(), {ctor})\nclf.fit(X_train, y_train)\n"
        'accuracy = clf.score(X_test, y_test)\nprint(f"accuracy: {accuracy:.3f}")',
        "from sklearn.metrics import classification_report, confusion_matrix\n"
        "y_pred = clf.predict(X_test)\nprint(classification_report(y_test, y_pred))\n"
        "cm = confusion_matrix(y_test, y_pred)\nfig, ax = plt.subplots(figsize=(4, 4))\n"
        "ax.imshow(cm, cmap='Blues')\nax.set_title('confusion matrix')\nplt.show()",
        "from sklearn.model_selection import cross_val_score\ncv = 5\n"
        f"scores = cross_val_score(make_pipeline(StandardScaler(), {ctor}), X, y, cv=cv)\n"
        "print('CV accuracy: %.3f +/- %.3f' % (scores.mean(), scores.std()))",
        "fig, axes = plt.subplots(1, 2, figsize=(8, 3))\n"
        "axes[0].hist(X[:, 0], bins=30)\naxes[1].scatter(X[:, 0], X[:, 1], c=y, s=8)\n"
        "axes[0].set_title('feature 0')\naxes[1].set_title('features 0 and 1')\nplt.tight_layout()",
    ]
    if heavy:
        cells.append(
            "from sklearn.model_selection import GridSearchCV\n"
            f"{settings}\n"
            f"search = GridSearchCV(make_pipeline(StandardScaler(), {ctor}), "
            "param_grid=grid, cv=3)\n".replace("param_grid=grid", "param_grid=" + _grid(model))
            + "search.fit(X_train, y_train)\nprint(search.best_params_)\n"
            "print('best CV score: %.3f' % search.best_score_)\n"
            "best_test = search.score(X_test, y_test)\nprint('test score', best_test)"
        )
    return cells


def _grid(model: str) -> str:
    step = model if model != "gboost" else "histgradientboostingclassifier"
    step = {
        "logreg": "logisticregression",
        "svc": "svc",
        "forest": "randomforestclassifier",
        "knn": "kneighborsclassifier",
        "tree": "decisiontreeclassifier",
    }.get(model, step)
    grid = {
        "logreg": {"C": [0.01, 0.1, 1.0, 10.0]},
        "svc": {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.01]},
        "forest": {"n_estimators": [50, 100], "max_depth": [4, 8, None]},
        "knn": {"n_neighbors": [1, 3, 5, 9, 15]},
        "tree": {"max_depth": [2, 4, 6, 8, None]},
        "gboost": {"learning_rate": [0.05, 0.1, 0.3]},
    }[model]
    return json.dumps({f"{step}__{k}": v for k, v in grid.items()}).replace("null", "None")


def loop_cells(data: str) -> list[str]:
    """A gallery favourite: a score per parameter value in a loop, then its curve."""
    return [
        HEAD + DATA[data],
        SPLIT,
        "from sklearn.svm import SVC\nCs = [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100]\n"
        "train_scores, test_scores = [], []\nfor C in Cs:\n"
        "    model = SVC(C=C, gamma='scale').fit(X_train, y_train)\n"
        "    train_scores.append(model.score(X_train, y_train))\n"
        "    test_scores.append(model.score(X_test, y_test))\n"
        "    print(f'C={C}: test {test_scores[-1]:.3f}')",
        "plt.semilogx(Cs, train_scores, label='train')\nplt.semilogx(Cs, test_scores, "
        "label='test')\nplt.legend()\nplt.xlabel('C')\nplt.ylabel('accuracy')\nplt.show()",
        "from sklearn.model_selection import validation_curve\n"
        "from sklearn.tree import DecisionTreeClassifier\ndepths = list(range(1, 16))\n"
        "train_s, valid_s = validation_curve(DecisionTreeClassifier(random_state=0), X, y, "
        "param_name='max_depth', param_range=depths, cv=5)\n"
        "plt.plot(depths, valid_s.mean(axis=1))\nplt.title('validation curve')\nplt.show()",
    ]


def regression_cells(data: str, model: str, heavy: bool) -> list[str]:
    imp, ctor, settings = REGRESSORS[model]
    cells = [
        HEAD + REGRESSION[data],
        SPLIT,
        f"{imp}\nfrom sklearn.metrics import mean_squared_error, r2_score\n{settings}\n"
        f"reg = {ctor}.fit(X_train, y_train)\ny_pred = reg.predict(X_test)\n"
        "mse = mean_squared_error(y_test, y_pred)\nr2 = r2_score(y_test, y_pred)\n"
        "print('MSE: %.2f' % mse)\nprint('R2: %.3f' % r2)",
        "fig, ax = plt.subplots()\nax.scatter(y_test, y_pred, s=10)\n"
        "ax.plot([y.min(), y.max()], [y.min(), y.max()], 'k--', lw=2)\n"
        "ax.set_xlabel('measured')\nax.set_ylabel('predicted')\nplt.show()",
        "from sklearn.model_selection import cross_val_score\n"
        f"scores = cross_val_score({ctor}, X, y, cv=5, scoring='r2')\n"
        "print('CV R2', scores.round(3))",
    ]
    if heavy:
        cells.append(
            "from sklearn.ensemble import GradientBoostingRegressor\n"
            "n_estimators = 300\nlearning_rate = 0.05\n"
            "gbr = GradientBoostingRegressor(n_estimators=n_estimators, "
            "learning_rate=learning_rate, random_state=0).fit(X_train, y_train)\n"
            "test_loss = np.zeros(n_estimators)\n"
            "for i, y_staged in enumerate(gbr.staged_predict(X_test)):\n"
            "    test_loss[i] = mean_squared_error(y_test, y_staged)\n"
            "plt.plot(np.arange(n_estimators) + 1, gbr.train_score_, label='train')\n"
            "plt.plot(np.arange(n_estimators) + 1, test_loss, label='test')\n"
            "plt.legend()\nplt.show()"
        )
    return cells


def cluster_cells() -> list[str]:
    return [
        HEAD + DATA["blobs"],
        "from sklearn.cluster import KMeans\nfrom sklearn.metrics import silhouette_score\n"
        "inertias, silhouettes = [], []\nks = range(2, 9)\nfor k in ks:\n"
        "    km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(X)\n"
        "    inertias.append(km.inertia_)\n"
        "    silhouettes.append(silhouette_score(X, km.labels_))\n"
        "print('best k', list(ks)[int(np.argmax(silhouettes))])",
        "fig, axes = plt.subplots(1, 2, figsize=(8, 3))\naxes[0].plot(list(ks), inertias, 'o-')\n"
        "axes[1].plot(list(ks), silhouettes, 'o-')\nplt.show()",
        "km = KMeans(n_clusters=4, n_init=10, random_state=0).fit(X)\n"
        "plt.scatter(X[:, 0], X[:, 1], c=km.labels_, s=5)\n"
        "plt.scatter(*km.cluster_centers_.T, c='red', marker='x')\nplt.show()",
    ]


def digits_gallery_cells() -> list[str]:
    """The gallery's 'recognizing hand-written digits': an image grid, a fit, a report."""
    return [
        HEAD + "from sklearn import datasets, metrics, svm\ndigits = datasets.load_digits()",
        "_, axes = plt.subplots(nrows=2, ncols=8, figsize=(10, 3))\n"
        "for ax, image, label in zip(axes.ravel(), digits.images, digits.target):\n"
        "    ax.set_axis_off()\n    ax.imshow(image, cmap=plt.cm.gray_r)\n"
        "    ax.set_title('Training: %i' % label)",
        "from sklearn.model_selection import train_test_split\n"
        "data = digits.images.reshape((len(digits.images), -1))\ngamma = 0.001\n"
        "clf = svm.SVC(gamma=gamma)\nX_train, X_test, y_train, y_test = train_test_split("
        "data, digits.target, test_size=0.5, shuffle=False)\nclf.fit(X_train, y_train)\n"
        "predicted = clf.predict(X_test)",
        "print(f'Classification report for classifier {clf}:\\n'\n"
        "      f'{metrics.classification_report(y_test, predicted)}\\n')",
        "disp = metrics.ConfusionMatrixDisplay.from_predictions(y_test, predicted)\n"
        "disp.figure_.suptitle('Confusion Matrix')\nplt.show()",
    ]


def learning_curve_cells(data: str) -> list[str]:
    return [
        HEAD + DATA[data],
        "from sklearn.model_selection import learning_curve\n"
        "from sklearn.naive_bayes import GaussianNB\nfrom sklearn.svm import SVC\n"
        "fig, axes = plt.subplots(1, 2, figsize=(9, 3))\n"
        "for ax, est in zip(axes, [GaussianNB(), SVC(gamma=0.001)]):\n"
        "    sizes, train_s, test_s = learning_curve(est, X, y, cv=5, "
        "train_sizes=np.linspace(0.1, 1.0, 5))\n"
        "    ax.plot(sizes, train_s.mean(axis=1), 'o-', label='train')\n"
        "    ax.plot(sizes, test_s.mean(axis=1), 'o-', label='cv')\n"
        "    ax.legend()\nplt.show()",
        "from sklearn.decomposition import PCA\npca = PCA(n_components=2).fit(X)\n"
        "X2 = pca.transform(X)\nprint('explained', pca.explained_variance_ratio_)\n"
        "plt.scatter(X2[:, 0], X2[:, 1], c=y, s=6)\nplt.show()",
    ]


def many_plots_cells(data: str) -> list[str]:
    """Several figures in one cell (a per-feature histogram grid)."""
    return [
        HEAD + DATA[data],
        "n_features = min(X.shape[1], 12)\nfor i in range(0, n_features, 4):\n"
        "    fig, axes = plt.subplots(1, 4, figsize=(10, 2))\n"
        "    for j, ax in enumerate(axes):\n"
        "        if i + j < n_features:\n            ax.hist(X[:, i + j], bins=20)\n"
        "    plt.show()",
        "corr = np.corrcoef(X.T)\nplt.imshow(corr, cmap='coolwarm')\nplt.colorbar()\nplt.show()",
        SPLIT,
        "from sklearn.linear_model import LogisticRegression\nC = 0.5\n"
        "clf = LogisticRegression(C=C, max_iter=2000).fit(X_train, y_train)\n"
        "print('accuracy', clf.score(X_test, y_test))",
    ]


def notebooks() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    pairs = [
        ("iris", "logreg"),
        ("iris", "svc"),
        ("iris", "knn"),
        ("wine", "forest"),
        ("wine", "logreg"),
        ("cancer", "svc"),
        ("cancer", "gboost"),
        ("digits", "knn"),
        ("digits", "logreg"),
        ("classif", "tree"),
        ("classif", "forest"),
        ("wine", "tree"),
    ]
    heavy = {("digits", "logreg"), ("classif", "forest"), ("cancer", "gboost"), ("wine", "forest")}
    for data, model in pairs:
        out.append((f"{model}_{data}", classifier_cells(data, model, (data, model) in heavy)))
    for data in ("iris", "cancer", "digits"):
        out.append((f"svc_curve_{data}", loop_cells(data)))
    for data, model in (
        ("diabetes", "ridge"),
        ("regr", "rfr"),
        ("diabetes", "gbr"),
        ("regr", "ridge"),
    ):
        out.append((f"{model}_{data}", regression_cells(data, model, model != "ridge")))
    out.append(("kmeans_blobs", cluster_cells()))
    out.append(("digits_gallery", digits_gallery_cells()))
    for data in ("digits", "wine", "cancer"):
        out.append((f"learning_curve_{data}", learning_curve_cells(data)))
    for data in ("wine", "cancer", "classif"):
        out.append((f"hist_grid_{data}", many_plots_cells(data)))
    out.append(("kmeans_blobs_2", cluster_cells()))
    return out


def notebook(cells: list[str]) -> dict[str, object]:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"c{i}",
                "metadata": {},
                "outputs": [],
                "source": src,
            }
            for i, src in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write(out: Path) -> list[Path]:
    """Writes every pair; returns the plain notebooks' paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (name, cells) in enumerate(notebooks(), 1):
        stem = f"{i:02d}_{name}"
        tracked = ["%load_ext nbops\n%track start -n " + stem] + [
            f"%%track -n c{j}\n{src}" for j, src in enumerate(cells)
        ]
        (out / f"{stem}.plain.ipynb").write_text(json.dumps(notebook(cells), indent=1))
        (out / f"{stem}.track.ipynb").write_text(json.dumps(notebook(tracked), indent=1))
        written.append(out / f"{stem}.plain.ipynb")
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "generated"
    paths = write(target)
    print(f"wrote {len(paths)} notebook pairs in {target}")
