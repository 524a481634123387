"""Learned 768-d embeddings of the 70,000 Fashion-MNIST images.

No real 768-d embeddings of a large pool ship here, so the k-center
benchmark makes its own from data that does: scikit-learn's
``MLPClassifier`` with one hidden layer of 768 ReLU units is trained for a
few epochs (fixed seed) on the 60,000 training images, pixels scaled to
[0, 1]; the embedding of an image is its hidden-layer activation,
relu(x W + b), float32. All 70,000 images (train and test) are embedded.

The result is cached under ``bench/cache/`` (not committed: about 0.2 GB),
keyed by the epochs and the seed, so reruns load it in a second.
"""

from __future__ import annotations

import pathlib
import sys
import time
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from datasets import CACHE_DIR, FASHION_DIR, MissingData, _idx  # noqa: E402

HIDDEN = 768
"""Width of the hidden layer, the embedding size."""


def _images_and_labels() -> tuple[np.ndarray, np.ndarray, int]:
    # All 70,000 images as float32 in [0, 1], the training labels, and how
    # many of the images are training images.
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        raise MissingData(
            f"Fashion-MNIST is not in {FASHION_DIR}: "
            "apt-get install dataset-fashion-mnist (make bench-data)"
        )
    parts = [
        _idx(FASHION_DIR / name).reshape(-1, 784)
        for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    ]
    labels = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    images = np.vstack(parts).astype(np.float32) / np.float32(255.0)
    return images, labels, len(parts[0])


def learned_embeddings(epochs: int = 3, seed: int = 0) -> np.ndarray:
    """Return the (70,000, 768) float32 hidden activations (see the module).

    Parameters
    ----------
    epochs : int, default=3
        Passes of Adam over the 60,000 training images.
    seed : int, default=0
        Seeds the initial weights and the mini-batch order.
    """
    path = CACHE_DIR / f"fashion_mlp{HIDDEN}_e{epochs}_s{seed}.npy"
    if path.exists():
        return np.load(path)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    images, labels, n_train = _images_and_labels()
    model = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,), max_iter=epochs, random_state=seed
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # A few epochs on purpose: the warning that it has not converged.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(images[:n_train], labels)
    seconds = time.perf_counter() - start
    hidden = images @ model.coefs_[0].astype(np.float32)
    hidden += model.intercepts_[0].astype(np.float32)
    np.maximum(hidden, 0.0, out=hidden)
    CACHE_DIR.mkdir(exist_ok=True)
    np.save(path, hidden)
    print(
        f"trained {epochs} epochs in {seconds:.1f} s, training accuracy "
        f"{model.score(images[:n_train], labels):.3f}; cached {path.name}",
        file=sys.stderr,
    )
    return hidden


if __name__ == "__main__":
    embeddings = learned_embeddings()
    print(embeddings.shape, embeddings.dtype, float((embeddings > 0).mean()))
