"""The whole active-learning loop around any scikit-learn-style classifier.

Fit on what is labelled, predict probabilities on the rest, let alquery rank
them, ask a labelling callback for the best batch, repeat:

>>> from sklearn.datasets import load_digits  # doctest: +SKIP
>>> from sklearn.linear_model import LogisticRegression
>>> from alquery.client import AlqueryClient
>>> from alquery.client.loop import run_loop
>>> X, y = load_digits(return_X_y=True)
>>> with AlqueryClient("127.0.0.1:50051") as client:
...     result = run_loop(
...         LogisticRegression(max_iter=2000), client, X, lambda rows: y[rows],
...         initial=range(20), classes=range(10), rounds=5, batch_size=20,
...     )
>>> result.estimator.score(X, y)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alquery.client.client import AlqueryClient
from alquery.client.frames import from_pandas

Labeler = Callable[[NDArray[np.int64]], Any]


@dataclasses.dataclass(frozen=True)
class Round:
    """One fit of the loop.

    Attributes
    ----------
    n_labeled : int
        How many samples the estimator was fitted on.
    score : float or None
        ``evaluate(estimator)`` after that fit; None without ``evaluate``.
    picked : ndarray of shape (n_picked,), int64
        Positions in ``features`` the service chose next, best first; empty
        after the last fit.
    """

    n_labeled: int
    score: float | None
    picked: NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class LoopResult:
    """What ``run_loop`` leaves behind.

    Attributes
    ----------
    estimator : object
        The estimator, fitted on every labelled sample.
    labeled : ndarray of shape (n_labeled,), int64
        Positions in ``features``, in the order they were labelled.
    labels : ndarray of shape (n_labeled,)
        Their labels, as the labelling callback gave them.
    rounds : list of Round
        One per fit: the initial set's first, the final fit's last.
    """

    estimator: Any
    labeled: NDArray[np.int64]
    labels: NDArray[Any]
    rounds: list[Round]


def _rows(data: Any, positions: NDArray[np.int64]) -> Any:
    """Rows of an array or a DataFrame, by position."""
    return data.iloc[positions] if hasattr(data, "iloc") else data[positions]


def _ask(label: Labeler, positions: NDArray[np.int64]) -> NDArray[Any]:
    labels = np.asarray(label(positions))
    if labels.shape != positions.shape:
        raise ValueError(
            f"label: returned {labels.shape[0] if labels.ndim else 'a scalar'} "
            f"labels for {len(positions)} positions; return one per position"
        )
    return labels


def class_probabilities(
    estimator: Any, features: Any, classes: NDArray[Any]
) -> NDArray[np.float64]:
    """``predict_proba`` spread over ``classes``, shape (n_samples, n_classes).

    An estimator fitted on few labels may not have seen every class: column
    j of the answer is ``classes[j]``, 0 for the classes it has not seen.
    ``classes`` must be sorted and distinct (ValueError otherwise).
    Estimators without ``classes_`` must already answer one column per
    class.
    """
    classes = _sorted_classes(np.asarray(classes))
    probabilities = np.asarray(estimator.predict_proba(features), dtype=np.float64)
    seen = getattr(estimator, "classes_", None)
    if seen is None:
        return probabilities
    full = np.zeros((probabilities.shape[0], len(classes)))
    full[:, np.searchsorted(classes, seen)] = probabilities
    return full


def run_loop(
    estimator: Any,
    client: AlqueryClient,
    features: Any,
    label: Labeler,
    *,
    initial: Iterable[int],
    strategy: str = "uncertainty.margin",
    batch_size: int = 10,
    rounds: int = 5,
    classes: Iterable[Any] | None = None,
    embeddings: Any = None,
    validation: tuple[Any, ...] | None = None,
    evaluate: Callable[[Any], float] | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> LoopResult:
    """Run ``rounds`` rounds of pool-based active learning through alquery.

    Each round fits ``estimator`` on the labelled samples, sends its
    probabilities and the embeddings of the unlabelled ones to the server,
    and asks ``label`` for the ``batch_size`` positions the server ranks
    best. A last fit follows the last round.

    Parameters
    ----------
    estimator : classifier with ``fit`` and ``predict_proba``
        Refitted from scratch every round, in place.
    client : AlqueryClient
        A client of a running server.
    features : array-like or DataFrame of shape (n_samples, n_features)
        Every sample, labelled or not; positions index its rows.
    label : callable
        ``label(positions)`` returns the labels of those rows of
        ``features``, one per position (a person, a lookup, a service).
    initial : iterable of int
        Positions to label before the first fit (the seed set).
    strategy : str, default="uncertainty.margin"
        "family.method"; see ``alquery strategies``.
    batch_size : int, default=10
        Samples labelled per round (fewer once the pool runs short).
    rounds : int, default=5
        Rounds of ranking and labelling; the loop stops early when every
        sample is labelled.
    classes : iterable, default=None
        Every class label, sorted; probability column j is ``classes[j]``.
        Default: the labels seen so far, which must then hold 2 classes or
        more. Give it when the seed set may miss a class.
    embeddings : array-like of shape (n_samples, n_embedding), default=None
        What diversity, hybrid and credibility strategies measure distances
        in; default ``features``.
    validation : (features, labels) or (features, labels, embeddings)
        A held-out labelled set, needed by the credibility strategies; its
        embeddings are needed when ``embeddings`` is given. Default None.
    evaluate : callable, default=None
        ``evaluate(estimator)`` after each fit, e.g. test accuracy; kept in
        each ``Round.score``.
    params, seed
        Passed on to ``AlqueryClient.rank``.

    Returns
    -------
    LoopResult
        The fitted estimator, the labelled positions and labels, and one
        ``Round`` per fit.

    Raises
    ------
    ValueError
        When ``label`` returns the wrong number of labels, or a label is
        not in ``classes``.
    AlqueryError
        When the server refuses a request, e.g. a strategy whose inputs the
        loop cannot give (``validation`` missing for credibility).

    Notes
    -----
    Every request carries the pool's probabilities and embeddings and the
    labelled set's embeddings and labels, whatever the strategy reads.
    The whole pool travels in every request; pools beyond the server's
    message limit need streaming (issue 6).
    """
    pool = features if embeddings is None else embeddings
    vectors = np.asarray(from_pandas(pool, "embeddings"))
    if rounds < 0:
        raise ValueError(f"rounds: got {rounds}; expected 0 or more")
    if classes is not None:
        # Read once: an iterator would be empty from the second round on.
        classes = _sorted_classes(np.asarray(list(classes)))
    labeled = _initial(initial, len(vectors))
    labels = _ask(label, labeled)
    history = []
    for round_ in range(rounds + 1):
        estimator.fit(_rows(features, labeled), labels)
        score = None if evaluate is None else float(evaluate(estimator))
        unlabeled = np.setdiff1d(np.arange(len(vectors)), labeled)
        if round_ == rounds or not len(unlabeled):
            history.append(Round(len(labeled), score, np.empty(0, dtype=np.int64)))
            break
        known = _classes(classes, labels, validation)
        inputs = {
            "labeled_embeddings": vectors[labeled],
            "labeled_labels": _codes(known, labels, "labels"),
        }
        if validation is not None:
            inputs.update(_validation_inputs(estimator, validation, known, embeddings))
        result = client.rank(
            strategy, min(batch_size, len(unlabeled)),
            probabilities=class_probabilities(
                estimator, _rows(features, unlabeled), known
            ),
            embeddings=vectors[unlabeled], params=params, seed=seed, **inputs,
        )
        picked = unlabeled[result.indices]
        history.append(Round(len(labeled), score, picked))
        labeled = np.concatenate([labeled, picked])
        labels = np.concatenate([labels, _ask(label, picked)])
    return LoopResult(estimator, labeled, labels, history)


def _initial(initial: Iterable[int], n_samples: int) -> NDArray[np.int64]:
    """The seed positions, each a row of the pool once.

    A negative position would label a row counted from the end while that
    row stayed in the pool, to be ranked and labelled again.
    """
    positions = np.fromiter(initial, dtype=np.int64)
    outside = positions[(positions < 0) | (positions >= n_samples)]
    if len(outside):
        raise ValueError(
            f"initial: position {outside[0]} is not a row of the "
            f"{n_samples} samples; expected 0 to {n_samples - 1}"
        )
    unique, counts = np.unique(positions, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"initial: position {unique[counts > 1][0]} is given twice; "
            "give each position once"
        )
    return positions


def _sorted_classes(classes: NDArray[Any]) -> NDArray[Any]:
    # Columns are placed by binary search (np.searchsorted), which reads
    # unsorted classes wrongly without a word.
    if len(classes) > 1 and not (classes[1:] > classes[:-1]).all():
        raise ValueError(
            "classes: must be sorted and distinct (as scikit-learn's "
            f"classes_); got {classes.tolist()[:20]}"
        )
    return classes


def _classes(
    classes: NDArray[Any] | None, labels: NDArray[Any], validation: Any
) -> NDArray[Any]:
    if classes is not None:
        return classes
    seen = [labels] + ([np.asarray(validation[1])] if validation is not None else [])
    return np.unique(np.concatenate(seen))


def _codes(classes: NDArray[Any], labels: Any, field: str) -> NDArray[np.int64]:
    """Labels as probability columns: the position of each in ``classes``."""
    labels = np.asarray(labels)
    unknown = labels[~np.isin(labels, classes)]
    if len(unknown):
        raise ValueError(
            f"{field}: label {unknown[0].item()!r} is not in classes; give every "
            "class in `classes`"
        )
    return np.searchsorted(classes, labels).astype(np.int64)


def _validation_inputs(
    estimator: Any, validation: tuple[Any, ...], classes: NDArray[Any], embeddings: Any
) -> dict[str, Any]:
    features, labels, *rest = validation
    if rest:
        vectors = rest[0]
    elif embeddings is None:
        vectors = features
    else:
        raise ValueError(
            "validation: give (features, labels, embeddings) when the pool "
            "has its own embeddings"
        )
    return {
        "validation_probabilities": class_probabilities(estimator, features, classes),
        "validation_labels": _codes(classes, labels, "validation"),
        "validation_embeddings": from_pandas(vectors, "validation.embeddings"),
    }
