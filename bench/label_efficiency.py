"""Label efficiency on real data: test accuracy against labels, every strategy.

Runs a pool-based active-learning loop through a real alquery server (started
here on a free loopback port unless --target is given) for random sampling
and every strategy the server lists, over several seeds, on digits,
Fashion-MNIST and 20 Newsgroups (see bench/datasets.py). The learner is a
logistic regression; strategies that need several passes get a committee of
bootstrap-trained logistic regressions as the passes axis.

Writes a section of bench/RESULTS.md (between label_efficiency markers), a
plot bench/label_efficiency.png and the raw curves as JSON under bench/out/.

    make bench-data   # once: Fashion-MNIST, the 20 Newsgroups files, MiniLM
    .venv/bin/python bench/label_efficiency.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import datasets  # noqa: E402

from alquery.client import AlqueryClient, AlqueryError  # noqa: E402
from alquery.client.local import LocalServer  # noqa: E402
from results import write_section  # noqa: E402  (bench/)

from alquery.client.demo import class_probabilities as probabilities  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SETTINGS = {
    # name: (seed labels, batch size, rounds)
    "digits": (20, 10, 30),
    "fashion": (50, 50, 10),
    "newsgroups": (40, 40, 10),
}
COMMITTEE = 5


def probcover_radius(data):
    """ProbCover needs a ball radius; the paper tunes it by cluster purity.
    Here: the median distance from a pool sample to its 5th nearest pool
    neighbour, on a 500-sample subset."""
    rng = np.random.default_rng(0)
    rows = rng.choice(len(data.pool_x), size=min(500, len(data.pool_x)), replace=False)
    sample = data.pool_x[rows]
    distances = np.sqrt(((sample[:, None, :] - sample[None, :, :]) ** 2).sum(axis=2))
    return float(np.median(np.sort(distances, axis=1)[:, 5]))


PARAMS = {
    "diversity.probcover": lambda data: {"radius": probcover_radius(data)},
    # Exact joint entropies up to 200 label configurations, sampled beyond:
    # the default 1,000 costs about an hour per data set here.
    "uncertainty.batchbald": lambda data: {"n_configurations": 200},
}
SECTION = "label_efficiency"


def fit(x, y, n_classes, seed=0):
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(x, y)
    return model


def committee(x, y, n_classes, rng):
    """Bootstrap-trained members; each sees at least two classes."""
    members = []
    while len(members) < COMMITTEE:
        rows = rng.integers(0, len(y), size=len(y))
        if len(np.unique(y[rows])) > 1:
            members.append(fit(x[rows], y[rows], n_classes))
    return members


def run_loop(data, strategy, info, client, seed, settings):
    """One loop; returns per-round (labels, accuracy, macro-F1)."""
    n_seed, batch_size, rounds = settings
    rng = np.random.default_rng(seed)
    labeled = rng.choice(len(data.pool_y), size=n_seed, replace=False)
    n_classes = data.n_classes
    curve = []
    for round_ in range(rounds + 1):
        x, y = data.pool_x[labeled], data.pool_y[labeled]
        model = fit(x, y, n_classes)
        predicted = model.predict(data.test_x)
        curve.append(
            (
                len(labeled),
                accuracy_score(data.test_y, predicted),
                f1_score(data.test_y, predicted, average="macro"),
            )
        )
        if round_ == rounds:
            break
        unlabeled = np.setdiff1d(np.arange(len(data.pool_y)), labeled)
        if strategy == "random":
            picked = rng.choice(len(unlabeled), size=batch_size, replace=False)
        else:
            if info["min_passes"] > 1:
                members = committee(x, y, n_classes, rng)
                pool_p = np.stack(
                    [
                        probabilities(m, data.pool_x[unlabeled], n_classes)
                        for m in members
                    ],
                    axis=1,
                )
            else:
                pool_p = probabilities(model, data.pool_x[unlabeled], n_classes)
            result = client.rank(
                strategy,
                batch_size,
                probabilities=pool_p,
                embeddings=data.pool_x[unlabeled],
                labeled_embeddings=x,
                labeled_labels=y,
                validation_probabilities=probabilities(
                    model, data.validation_x, n_classes
                ),
                validation_labels=data.validation_y,
                validation_embeddings=data.validation_x,
                seed=seed * 1000 + round_,
                return_scores=False,
                params=PARAMS[strategy](data) if strategy in PARAMS else None,
            )
            picked = result.indices
        labeled = np.concatenate([labeled, unlabeled[picked]])
    return curve


def summarise(name, curves, full_accuracy):
    """Per strategy: mean curves and the label counts the table reports."""
    labels = [point[0] for point in next(iter(curves.values()))[0]]
    mean = {
        s: (
            np.mean([[p[1] for p in c] for c in runs], axis=0),
            np.mean([[p[2] for p in c] for c in runs], axis=0),
        )
        for s, runs in curves.items()
    }

    def first_reaching(accuracy, goal):
        hits = np.flatnonzero(accuracy >= goal)
        return labels[hits[0]] if len(hits) else None

    random_final = mean["random"][0][-1]
    goal = 0.95 * full_accuracy
    random_to_goal = first_reaching(mean["random"][0], goal)
    rows = []
    for strategy, (accuracy, f1) in mean.items():
        to_goal = first_reaching(accuracy, goal)
        to_random = first_reaching(accuracy, random_final)
        rows.append(
            {
                "strategy": strategy,
                "auc": float(accuracy.mean()),
                "final_accuracy": float(accuracy[-1]),
                "final_f1": float(f1[-1]),
                "labels_to_95_full": to_goal,
                "vs_random": (to_goal / random_to_goal)
                if to_goal and random_to_goal
                else None,
                "labels_to_random_final": to_random,
                "share_of_random_labels": to_random / labels[-1] if to_random else None,
            }
        )
    rows.sort(key=lambda r: -r["auc"])
    return {
        "dataset": name,
        "labels": labels,
        "full_accuracy": full_accuracy,
        "mean": {s: [a.tolist(), f.tolist()] for s, (a, f) in mean.items()},
        "rows": rows,
    }


def table(summary, seeds, settings):
    n_seed, batch_size, rounds = settings
    lines = [
        f"### {summary['dataset']}",
        "",
        f"{seeds} seeds; {n_seed} seed labels, then {rounds} rounds of "
        f"{batch_size}; logistic regression; full-pool accuracy "
        f"{summary['full_accuracy']:.4f} (95% of it: "
        f"{0.95 * summary['full_accuracy']:.4f}).",
        "",
        "| strategy | mean acc. over rounds | final acc. | final macro-F1 "
        "| labels to 95% of full | vs random | labels to random's final "
        "| share of random's labels |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:

        def show(value, fmt="{}"):
            return "-" if value is None else fmt.format(value)

        lines.append(
            f"| {r['strategy']} | {r['auc']:.4f} | {r['final_accuracy']:.4f} "
            f"| {r['final_f1']:.4f} | {show(r['labels_to_95_full'])} "
            f"| {show(r['vs_random'], '{:.2f}')} | {show(r['labels_to_random_final'])} "
            f"| {show(r['share_of_random_labels'], '{:.0%}')} |"
        )
    return "\n".join(lines)


def plot(summaries, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(6 * len(summaries), 4.5))
    axes = np.atleast_1d(axes)
    for ax, summary in zip(axes, summaries):
        labels = summary["labels"]
        best = [r["strategy"] for r in summary["rows"] if r["strategy"] != "random"][:5]
        for strategy, (accuracy, _) in summary["mean"].items():
            if strategy == "random":
                ax.plot(labels, accuracy, color="black", lw=2.5, label="random")
            elif strategy in best:
                ax.plot(labels, accuracy, lw=1.8, label=strategy)
            else:
                ax.plot(labels, accuracy, color="0.8", lw=0.8)
        ax.set_title(f"{summary['dataset']} (grey: other strategies)")
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,fashion,newsgroups")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", help="comma-separated; default: all")
    parser.add_argument("--target", help="a running server; default: start one")
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--plot", type=pathlib.Path, default=HERE / "label_efficiency.png"
    )
    args = parser.parse_args(argv)

    if args.target:
        return run(args, args.target)
    with LocalServer(["--threads", "2"]) as server:
        return run(args, server.target)


def run(args, target):
    summaries, sections = [], []
    with AlqueryClient(target, timeout=600) as client:
        offered = {info["name"]: info for info in client.strategies()}
        names = args.strategies.split(",") if args.strategies else sorted(offered)
        for name in args.datasets.split(","):
            try:
                loaded = [datasets.LOADERS[name](seed) for seed in range(args.seeds)]
            except datasets.MissingData as error:
                sys.stderr.write(f"skipping {name}: {error}\n")
                continue
            settings = SETTINGS[name]
            curves = {}
            for strategy in ["random", *names]:
                start = time.perf_counter()
                try:
                    curves[strategy] = [
                        run_loop(
                            data,
                            strategy,
                            offered.get(strategy),
                            client,
                            seed,
                            settings,
                        )
                        for seed, data in enumerate(loaded)
                    ]
                except AlqueryError as error:
                    sys.stderr.write(f"{name} {strategy}: {error}\n")
                    continue
                sys.stderr.write(
                    f"{name} {strategy}: {time.perf_counter() - start:.1f} s\n"
                )
            full = np.mean(
                [
                    accuracy_score(
                        d.test_y, fit(d.pool_x, d.pool_y, d.n_classes).predict(d.test_x)
                    )
                    for d in loaded
                ]
            )
            summary = summarise(name, curves, float(full))
            summaries.append(summary)
            sections.append(table(summary, args.seeds, settings))
            # Written after each data set, so a long run keeps what it has.
            report(args, summaries, sections)
    return 0


def report(args, summaries, sections):
    """Write the JSON, the plot and the RESULTS.md section for what is done."""
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "label_efficiency.json").write_text(json.dumps(summaries))
    plot(summaries, args.plot)
    command = "python bench/label_efficiency.py " + " ".join(sys.argv[1:])
    text = "\n\n".join(
        [
            "## Label efficiency",
            f"Command: `{command.strip()}` (plot: `{args.plot.name}`). Produced "
            f"{time.strftime('%Y-%m-%d')} on a 2-core machine. Rows are sorted "
            "by mean test accuracy over all rounds (area under the learning "
            'curve). "vs random": labels a strategy needs to reach 95% of '
            "the full-pool accuracy, divided by random's. \"share of random's "
            "labels\": the labels a strategy needs to reach random's final "
            "accuracy, as a share of random's final label count; '-' means "
            "never within the budget. No published result uses this learner, "
            "these data and this budget, so none is printed beside ours.",
            *sections,
        ]
    )
    write_section(SECTION, text, args.results)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
