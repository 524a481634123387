"""The main job: an active-learning loop on scikit-learn's digits, through alquery.

Starts ``alquery serve`` on a free loopback port, then for each strategy runs
a pool-based loop: train a logistic regression on a small labelled seed set,
send the pool's probabilities and embeddings to the server, "label" the batch
it returns from the held labels, retrain, repeat. Prints test accuracy against
the number of labels for every strategy, and stops the server.

Run with ``make run`` or ``python -m alquery.client.demo``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from alquery.client.client import AlqueryClient
from alquery.client.local import LocalServer

STRATEGIES = (
    "random",
    # The v0 strategies, one or more per family ...
    "uncertainty.least_confidence",
    "uncertainty.margin",
    "uncertainty.entropy",
    "diversity.kcenter",
    "credibility.validation_knn",
    # ... and one later strategy per family. bench/label_efficiency.py runs
    # every strategy the server offers.
    "diversity.typiclust",
    "hybrid.badge",
    "credibility.class_weakness",
)


class Digits:
    """The digits split once: test set, validation set, and the pool."""

    def __init__(self, seed: int, n_validation: int) -> None:
        features, labels = load_digits(return_X_y=True)
        features = features / 16.0
        rest_x, self.test_x, rest_y, self.test_y = train_test_split(
            features, labels, test_size=0.3, stratify=labels, random_state=seed
        )
        self.pool_x, self.validation_x, self.pool_y, self.validation_y = (
            train_test_split(
                rest_x, rest_y, test_size=n_validation, stratify=rest_y,
                random_state=seed,
            )
        )


N_CLASSES = 10


def _model() -> LogisticRegression:
    return LogisticRegression(max_iter=2000)


def class_probabilities(
    model: LogisticRegression, features: np.ndarray, n_classes: int = N_CLASSES
) -> np.ndarray:
    """Return probabilities over every class, shape (n_samples, n_classes).

    A model trained on a small seed set may not have seen every class; its
    ``predict_proba`` then has fewer columns. The service needs column c to
    mean class c (validation labels index the columns), so the missing
    classes get probability 0.
    """
    full = np.zeros((len(features), n_classes))
    full[:, model.classes_] = model.predict_proba(features)
    return full


def run_loop(
    data: Digits,
    choose: Callable[[LogisticRegression, np.ndarray, np.ndarray, int], np.ndarray],
    *,
    seed: int,
    n_seed: int,
    batch_size: int,
    rounds: int,
) -> list[float]:
    """Run one loop; return test accuracy after the seed set and each round.

    ``choose(model, labeled, unlabeled, batch_size)`` returns positions in
    ``unlabeled`` to label next; ``labeled`` and ``unlabeled`` are positions
    in the pool.
    """
    rng = np.random.default_rng(seed)
    labeled = rng.choice(len(data.pool_y), size=n_seed, replace=False)
    accuracies = []
    for round_ in range(rounds + 1):
        model = _model().fit(data.pool_x[labeled], data.pool_y[labeled])
        accuracies.append(model.score(data.test_x, data.test_y))
        if round_ == rounds:
            break
        unlabeled = np.setdiff1d(np.arange(len(data.pool_y)), labeled)
        picked = choose(model, labeled, unlabeled, batch_size)
        labeled = np.concatenate([labeled, unlabeled[picked]])
    return accuracies


def server_strategy(client: AlqueryClient, data: Digits, name: str):
    """A ``choose`` function that asks the server with strategy ``name``."""

    def choose(model, labeled, unlabeled, batch_size):
        result = client.rank(
            name,
            batch_size,
            probabilities=class_probabilities(model, data.pool_x[unlabeled]),
            embeddings=data.pool_x[unlabeled],
            labeled_embeddings=data.pool_x[labeled],
            validation_probabilities=class_probabilities(model, data.validation_x),
            validation_labels=data.validation_y,
            validation_embeddings=data.validation_x,
        )
        return result.indices

    return choose


def random_strategy(seed: int):
    """The baseline: a uniformly random batch, drawn on the client."""
    rng = np.random.default_rng(seed)

    def choose(model, labeled, unlabeled, batch_size):
        return rng.choice(len(unlabeled), size=batch_size, replace=False)

    return choose


def format_table(
    curves: dict[str, np.ndarray], labels: Sequence[int], repeats: int
) -> str:
    """Render mean test accuracy per strategy (rows) per label count (columns),
    with the mean over the columns last."""
    width = max(len(name) for name in curves) + 2
    lines = [
        f"Test accuracy on digits, mean of {repeats} runs "
        "(rows: strategy; columns: labels in the training set)",
        "strategy".ljust(width)
        + "".join(f"{count:>7d}" for count in labels)
        + "   mean",
    ]
    for name, curve in curves.items():
        cells = "".join(f"{value:7.3f}" for value in curve)
        lines.append(f"{name.ljust(width)}{cells}{curve.mean():7.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--validation-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target", help="use this server instead of starting one")
    args = parser.parse_args(argv)

    if args.target:
        return _run(args, args.target)
    with LocalServer() as server:
        return _run(args, server.target)


def _run(args: argparse.Namespace, target: str) -> int:
    curves: dict[str, list[list[float]]] = {name: [] for name in STRATEGIES}
    with AlqueryClient(target) as client:
        for repeat in range(args.repeats):
            data = Digits(seed=repeat, n_validation=args.validation_size)
            for name in STRATEGIES:
                choose = (
                    random_strategy(repeat)
                    if name == "random"
                    else server_strategy(client, data, name)
                )
                curves[name].append(
                    run_loop(
                        data, choose, seed=repeat, n_seed=args.seed_size,
                        batch_size=args.batch_size, rounds=args.rounds,
                    )
                )
    labels = [args.seed_size + r * args.batch_size for r in range(args.rounds + 1)]
    means = {name: np.mean(runs, axis=0) for name, runs in curves.items()}
    sys.stdout.write(format_table(means, labels, args.repeats) + "\n")
    sys.stdout.write(
        f"Pool {len(data.pool_y)}, test {len(data.test_y)}; credibility also "
        f"sees a labelled validation set of {args.validation_size}, not counted "
        "in the labels column. random is drawn on the client.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
