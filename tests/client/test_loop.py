"""run_loop drives a whole active-learning loop against the real server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from alquery.client.loop import class_probabilities, run_loop


@pytest.fixture(scope="module")
def digits():
    features, labels = load_digits(return_X_y=True)
    return features[:600] / 16.0, labels[:600], features[600:] / 16.0, labels[600:]


def model():
    return LogisticRegression(max_iter=2000)


def test_loop_labels_what_the_service_ranks_and_learns(client, digits):
    features, labels, test_x, test_y = digits
    asked = []

    def label(positions):
        asked.append(positions.copy())
        return labels[positions]

    result = run_loop(
        model(), client, features, label, initial=range(20), classes=range(10),
        strategy="uncertainty.margin", batch_size=20, rounds=3,
        evaluate=lambda estimator: estimator.score(test_x, test_y),
    )

    # The same loop written by hand with the client.
    labeled = np.arange(20)
    for round_ in range(3):
        fitted = model().fit(features[labeled], labels[labeled])
        unlabeled = np.setdiff1d(np.arange(600), labeled)
        probabilities = class_probabilities(fitted, features[unlabeled], np.arange(10))
        ranked = client.rank("uncertainty.margin", 20, probabilities=probabilities)
        picked = unlabeled[ranked.indices]
        assert result.rounds[round_].picked.tolist() == picked.tolist()
        labeled = np.concatenate([labeled, picked])

    assert result.labeled.tolist() == labeled.tolist()
    assert result.labels.tolist() == labels[labeled].tolist()
    assert [len(positions) for positions in asked] == [20, 20, 20, 20]
    assert [r.n_labeled for r in result.rounds] == [20, 40, 60, 80]
    assert result.rounds[-1].picked.size == 0
    assert result.rounds[-1].score > result.rounds[0].score + 0.1
    assert result.rounds[-1].score == result.estimator.score(test_x, test_y)


def test_loop_takes_a_dataframe_and_a_validation_set(client, digits):
    features, labels, test_x, test_y = digits
    columns = [f"pixel{i}" for i in range(64)]
    frame = pd.DataFrame(features, columns=columns)
    result = run_loop(
        model(), client, frame, lambda rows: labels[rows], initial=range(30),
        strategy="credibility.validation_knn", batch_size=15, rounds=2,
        validation=(pd.DataFrame(test_x[:100], columns=columns), test_y[:100]),
    )
    assert len(set(result.labeled.tolist())) == 60
    assert all(len(r.picked) == 15 for r in result.rounds[:-1])


def test_loop_stops_when_the_pool_is_used_up(client, digits):
    features, labels, _, _ = digits
    result = run_loop(
        model(), client, features[:30], lambda rows: labels[rows],
        initial=range(20), strategy="diversity.kcenter", batch_size=8, rounds=5,
    )
    assert [r.n_labeled for r in result.rounds] == [20, 28, 30]
    assert sorted(result.labeled.tolist()) == list(range(30))


def test_loop_refuses_a_labeler_that_answers_the_wrong_count(client, digits):
    features, labels, _, _ = digits
    with pytest.raises(ValueError, match="label: returned 1 labels for 20"):
        run_loop(model(), client, features, lambda rows: labels[:1], initial=range(20))


def test_loop_refuses_a_label_outside_the_classes(client, digits):
    features, labels, _, _ = digits
    with pytest.raises(ValueError, match="labels: label 9 is not in classes"):
        run_loop(
            model(), client, features, lambda rows: labels[rows],
            initial=range(40), classes=range(9),
        )


@pytest.mark.parametrize(
    "arguments, message",
    [
        # Row -1 was labelled as the last row while that row stayed in the
        # pool, to be ranked and labelled again.
        ({"initial": [0, 1, -1]}, "initial: position -1 is not a row"),
        # A raw IndexError from numpy.
        ({"initial": [0, 1, 600]}, "initial: position 600 is not a row"),
        # Labelled twice, fitted with double weight, counted twice.
        ({"initial": [0, 1, 1]}, "initial: position 1 is given twice"),
        # A NotFittedError from scikit-learn.
        ({"rounds": -1}, "rounds: got -1; expected 0 or more"),
        # searchsorted on unsorted classes put probabilities in the wrong
        # columns, or past the last one (IndexError).
        ({"classes": [0, 2, 1, *range(3, 10)]}, "classes: must be sorted"),
        ({"classes": [0, 0, *range(1, 10)]}, "classes: must be sorted and distinct"),
    ],
)
def test_loop_refuses_arguments_it_would_misread(client, digits, arguments, message):
    features, labels, _, _ = digits
    loop = {"initial": range(20), "classes": range(10), "rounds": 1, **arguments}
    asked = []

    def label(positions):
        asked.append(positions)
        return labels[positions]

    with pytest.raises(ValueError, match=message):
        run_loop(model(), client, features, label, **loop)
    assert asked == []  # refused before anyone was asked for a label


def test_class_probabilities_refuses_unsorted_classes(digits):
    features, labels, _, _ = digits
    fitted = model().fit(features[:50], labels[:50])
    with pytest.raises(ValueError, match="classes: must be sorted"):
        class_probabilities(fitted, features[:5], np.array([1, 0, *range(2, 10)]))
