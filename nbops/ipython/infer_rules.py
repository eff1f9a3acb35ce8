"""The vocabulary of ``%%track``'s inference: which calls fit or build a model, which score or
evaluate one, which draw, and which names are scores, data or styling. Pure functions over AST
nodes; ``infer.py`` applies them to a cell (the rules are written down in the README, Magics)."""

from __future__ import annotations

import ast
import re

# calls that train: a method of that name, or a function of that name
FIT_METHODS = frozenset(
    {"fit", "fit_transform", "fit_predict", "partial_fit", "fit_resample", "train", "fit_generator"}
)
FIT_FUNCTIONS = frozenset(
    {
        "cross_val_score",
        "cross_validate",
        "cross_val_predict",
        "learning_curve",
        "validation_curve",
        "permutation_test_score",
        "make_pipeline",
        "make_union",
        "make_column_transformer",
        "train",
    }
)
# CamelCase callables that build no model
NOT_MODELS = frozenset(
    {
        "Path",
        "PurePath",
        "DataFrame",
        "Series",
        "Index",
        "Figure",
        "Counter",
        "OrderedDict",
        "Timer",
        "Decimal",
        "Fraction",
        "ListedColormap",
        "Normalize",
        "LogNorm",
        "Line2D",
        "Patch",
        "Rectangle",
        "Circle",
        "Ellipse",
        "HTML",
        "Markdown",
        "Image",
    }
)
# scoring and evaluation: a callee named like this returns a score
_SCORE_CALL = re.compile(
    r"^(score|evaluate|(\w+_)?(score|error|loss|deviance|corrcoef)|"
    r"classification_report|cross_validate|precision_recall_fscore_support|accuracy|auc)$"
)
SCORE_ATTRIBUTES = frozenset({"best_score_", "oob_score_"})
# what a model returns for data: never a score, whatever the name it is given
PREDICTIONS = frozenset(
    {
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
        "transform",
        "score_samples",
        "forward",
        "inverse_transform",
    }
)
BEST_PARAMS = "best_params_"
# a name made of these words (split on '_') is a score when it holds a computed number
SCORE_WORDS = frozenset(
    {
        "score",
        "scores",
        "acc",
        "accuracy",
        "auc",
        "f1",
        "precision",
        "recall",
        "mse",
        "rmse",
        "mae",
        "mape",
        "r2",
        "loss",
        "logloss",
        "error",
        "err",
        "silhouette",
        "ari",
        "nmi",
        "ap",
        "balanced",
        "kappa",
        "mcc",
        "deviance",
        "likelihood",
        "aic",
        "bic",
        "perplexity",
    }
)
COUNT_PREFIXES = ("n_", "num_", "count_", "len_", "size_")
_PLOT_ROOTS = re.compile(r"^(plt|pyplot|matplotlib|mpl|sns|seaborn|px|go|plotly|cm)$")
_AXES_ROOTS = re.compile(r"^(ax|axs|axes|axis|fig|figure|subplot|sub)\w*$|^\w*_ax(es)?$")
PLOT_METHODS = frozenset(
    {
        "plot",
        "scatter",
        "hist",
        "hist2d",
        "bar",
        "barh",
        "imshow",
        "matshow",
        "contour",
        "contourf",
        "pcolormesh",
        "fill_between",
        "fill_betweenx",
        "errorbar",
        "legend",
        "annotate",
        "text",
        "axhline",
        "axvline",
        "axhspan",
        "axvspan",
        "boxplot",
        "violinplot",
        "step",
        "stem",
        "pie",
        "quiver",
        "colorbar",
        "suptitle",
        "loglog",
        "semilogx",
        "semilogy",
        "from_estimator",
        "from_predictions",
    }
)
_PLOT_METHOD_PREFIX = re.compile(r"^(set_|plot_|add_)")
_DATA_NAME = re.compile(
    r"^(X|Y|x|y|Z|z)(_?\w*)?$|^(data|df|dataset|frame|features|labels|target|targets)(_\w+)?$"
)


def dotted(node: ast.AST) -> list[str]:
    """``a.b.c`` as ["a", "b", "c"]; a call or subscript in the chain ends it at that point
    (``make_x().fit`` gives ["<call>", "fit"])."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            break
        elif isinstance(node, ast.Call):
            parts.append("<call>")
            break
        else:
            parts.append("<expr>")
            break
    return parts[::-1]


def callee(call: ast.Call) -> str:
    """The last name of what is called: ``model.fit`` -> "fit", ``LogisticRegression``."""
    return dotted(call.func)[-1]


def is_camel(name: str) -> bool:
    return bool(name) and name[0].isupper() and not name.isupper() or name in _ALL_CAPS_MODELS


_ALL_CAPS_MODELS = frozenset(
    {"PCA", "SVC", "SVR", "DBSCAN", "OPTICS", "TSNE", "LDA", "QDA", "NMF", "ICA", "MLP"}
)


def is_plot_call(call: ast.Call) -> bool:
    parts = dotted(call.func)
    name = parts[-1]
    if name.endswith("Display") or name in PLOT_METHODS or _PLOT_METHOD_PREFIX.match(name):
        return True
    if len(parts) > 1 and (_PLOT_ROOTS.match(parts[0]) or _AXES_ROOTS.match(parts[0])):
        return True
    return len(parts) > 1 and parts[-2].endswith("Display")


def is_score_call(call: ast.Call) -> bool:
    name = callee(call)
    return bool(_SCORE_CALL.match(name)) and not is_plot_call(call)


def is_model_call(call: ast.Call) -> bool:
    """A fit, a cross-validation, or the construction of an estimator or a search."""
    parts = dotted(call.func)
    name = parts[-1]
    if name in FIT_METHODS and len(parts) > 1:
        return True
    if name in FIT_FUNCTIONS:
        return True
    if is_plot_call(call) or name in NOT_MODELS or name.endswith(("Error", "Exception")):
        return False
    return is_camel(name)


def is_data_name(name: str) -> bool:
    return bool(_DATA_NAME.match(name))


def is_score_name(name: str) -> bool:
    """``accuracy``, ``val_loss``, ``mean_f1``: named as a score, not a count (``n_errors``)."""
    low = name.lower()
    if low.startswith(COUNT_PREFIXES):
        return False
    return any(w in SCORE_WORDS for w in low.split("_"))
