"""Do the credibility strategies find the classes a seed set left out?

On scikit-learn's digits, the seed set deliberately holds no sample of the
weak classes (3 and 8 by default), so the first model never predicts them.
Each strategy then runs a pool-based loop through a real alquery server
(started here on a free loopback port unless --target is given), against
uncertainty.margin, uncertainty.entropy and random sampling. The learner is
a logistic regression on the 64 pixel features, which are also the
embeddings. Reported per strategy, averaged over seeds:

- weak share: the share of each batch whose true class is a weak class;
- gap: validation error rate on the weak classes minus that on the other
  classes, after each round (it starts high, since the first model never
  predicts a weak class, and should shrink);
- test accuracy after the last round.

Writes a section of bench/RESULTS.md (between credibility markers), a plot
bench/credibility_experiment.png and the raw per-round values as JSON under
bench/out/.

    .venv/bin/pip install -e '.[test,peers,bench]'
    .venv/bin/python bench/credibility_experiment.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import datasets  # noqa: E402

from alquery.client import AlqueryClient  # noqa: E402
from alquery.client.local import LocalServer  # noqa: E402
from results import write_section  # noqa: E402  (bench/)

from alquery.client.demo import class_probabilities as probabilities  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
CREDIBILITY = [
    "credibility.validation_knn",
    "credibility.weak_clusters",
    "credibility.class_weakness",
    "credibility.conformal",
    "credibility.gradient_alignment",
    "credibility.trust_score",
]
BASELINES = ["uncertainty.margin", "uncertainty.entropy", "random"]
SECTION = "credibility"


def seed_set(data, weak, n_seed, rng):
    """n_seed pool positions, none of a weak class, every other class once
    first so the model sees them all."""
    allowed = np.flatnonzero(~np.isin(data.pool_y, weak))
    classes = np.unique(data.pool_y[allowed])
    first = [rng.choice(allowed[data.pool_y[allowed] == c]) for c in classes]
    rest = rng.choice(np.setdiff1d(allowed, first), n_seed - len(first), replace=False)
    return np.concatenate([first, rest])


def error_gap(model, data, weak):
    wrong = model.predict(data.validation_x) != data.validation_y
    in_weak = np.isin(data.validation_y, weak)
    return float(wrong[in_weak].mean() - wrong[~in_weak].mean())


def run_loop(data, strategy, client, seed, weak, args):
    """One loop; returns per-round weak shares, gaps and the final accuracy."""
    rng = np.random.default_rng(seed)
    labeled = seed_set(data, weak, args.n_seed, rng)
    n_classes = data.n_classes
    shares, gaps = [], []
    for round_ in range(args.rounds + 1):
        x, y = data.pool_x[labeled], data.pool_y[labeled]
        model = LogisticRegression(max_iter=1000).fit(x, y)
        gaps.append(error_gap(model, data, weak))
        if round_ == args.rounds:
            break
        unlabeled = np.setdiff1d(np.arange(len(data.pool_y)), labeled)
        if strategy == "random":
            picked = rng.choice(len(unlabeled), size=args.batch_size, replace=False)
        else:
            picked = client.rank(
                strategy,
                args.batch_size,
                probabilities=probabilities(model, data.pool_x[unlabeled], n_classes),
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
            ).indices
        batch = unlabeled[picked]
        shares.append(float(np.isin(data.pool_y[batch], weak).mean()))
        labeled = np.concatenate([labeled, batch])
    accuracy = float((model.predict(data.test_x) == data.test_y).mean())
    return {"shares": shares, "gaps": gaps, "accuracy": accuracy}


def summarise(runs):
    return {
        "shares": np.mean([r["shares"] for r in runs], axis=0).tolist(),
        "gaps": np.mean([r["gaps"] for r in runs], axis=0).tolist(),
        "accuracy": float(np.mean([r["accuracy"] for r in runs])),
    }


def table(summaries, args, weak):
    mid = args.rounds // 2
    lines = [
        "| strategy | weak share, round 1 | weak share, all rounds "
        f"| gap, start | gap, round {mid} | gap, round {args.rounds} "
        "| final test acc. |",
        "|---|---|---|---|---|---|---|",
    ]
    order = sorted(summaries, key=lambda s: summaries[s]["gaps"][-1])
    for name in order:
        s = summaries[name]
        lines.append(
            f"| {name} | {s['shares'][0]:.0%} | {np.mean(s['shares']):.0%} "
            f"| {s['gaps'][0]:.3f} | {s['gaps'][mid]:.3f} | {s['gaps'][-1]:.3f} "
            f"| {s['accuracy']:.4f} |"
        )
    base_rate = np.mean([np.isin(d.pool_y, weak).mean() for d in args.loaded])
    return "\n\n".join(
        [
            "## Credibility on under-represented classes",
            f"Command: `python bench/credibility_experiment.py "
            f"{' '.join(sys.argv[1:])}`. Digits, {args.seeds} seeds; "
            f"{args.n_seed} seed labels with no sample of classes "
            f"{', '.join(map(str, weak))}, then {args.rounds} rounds of "
            f"{args.batch_size}; logistic regression; validation set of "
            f"{len(args.loaded[0].validation_y)}. Weak classes are "
            f"{base_rate:.0%} of the pool, so random sampling's weak share is "
            "about that. Gap: validation error on the weak classes minus that "
            "on the others. Sorted by the final gap. Produced "
            f"{time.strftime('%Y-%m-%d')}.",
            "\n".join(lines),
        ]
    )


def plot(summaries, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (share_ax, gap_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, s in summaries.items():
        style = (
            {"color": "black", "lw": 2.5}
            if name == "random"
            else ({"ls": "--"} if name.startswith("uncertainty") else {})
        )
        share_ax.plot(range(1, args.rounds + 1), s["shares"], label=name, **style)
        gap_ax.plot(range(args.rounds + 1), s["gaps"], label=name, **style)
    share_ax.set(xlabel="round", ylabel="share of the batch in weak classes")
    gap_ax.set(xlabel="round", ylabel="validation error gap (weak - rest)")
    gap_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)



def run(args, target):
    weak = [int(c) for c in args.weak.split(",")]
    args.loaded = [datasets.digits(seed) for seed in range(args.seeds)]
    summaries, raw = {}, {}
    with AlqueryClient(target, timeout=600) as client:
        for strategy in CREDIBILITY + BASELINES:
            start = time.perf_counter()
            runs = [
                run_loop(data, strategy, client, seed, weak, args)
                for seed, data in enumerate(args.loaded)
            ]
            raw[strategy], summaries[strategy] = runs, summarise(runs)
            sys.stderr.write(f"{strategy}: {time.perf_counter() - start:.1f} s\n")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "credibility_experiment.json").write_text(json.dumps(raw))
    plot(summaries, args, args.plot)
    text = table(summaries, args, weak)
    write_section(SECTION, text, args.results)
    sys.stdout.write(text + "\n")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--weak", default="3,8", help="classes left out of the seed set"
    )
    parser.add_argument("--n-seed", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--target", help="a running server; default: start one")
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--plot", type=pathlib.Path, default=HERE / "credibility_experiment.png"
    )
    args = parser.parse_args(argv)
    if args.target:
        return run(args, args.target)
    with LocalServer(["--threads", "2"]) as server:
        return run(args, server.target)


if __name__ == "__main__":
    sys.exit(main())
