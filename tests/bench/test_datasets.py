"""The benchmark data loaders, on the data the packages ship.

Each test skips, with the install command, when its data set is missing.
"""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))

import datasets  # noqa: E402


def check(data, n_features):
    for x, y in (
        (data.pool_x, data.pool_y),
        (data.validation_x, data.validation_y),
        (data.test_x, data.test_y),
    ):
        assert x.shape == (len(y), n_features)
        assert np.isfinite(x).all()
        assert y.min() >= 0 and y.max() < data.n_classes
    assert len(np.unique(data.pool_y)) == data.n_classes


def test_digits_split_keeps_every_sample_once():
    data = datasets.digits(seed=0)
    check(data, 64)
    assert len(data.pool_y) + len(data.validation_y) + len(data.test_y) == 1797


def test_fashion_mnist_from_the_debian_package():
    if not (datasets.FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist is not installed (make bench-data)")
    data = datasets.fashion(seed=0, n_pool=500, n_test=200)
    check(data, 50)
    assert data.n_classes == 10


def test_idx_reader_decodes_the_header(tmp_path):
    import gzip

    path = tmp_path / "tiny-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (2, 2, 3))
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(range(12)))
    array = datasets._idx(path)
    assert array.shape == (2, 2, 3)
    assert array[1, 1, 2] == 11


def test_newsgroups_tab_reader(tmp_path):
    path = tmp_path / "tiny.tab"
    path.write_text(
        "Category\tText\nd\tstring\nclass\t\nsci.space\tthe moon\nrec.autos\ta car\n"
    )
    labels, texts = datasets._read_tab(path)
    assert labels == ["sci.space", "rec.autos"]
    assert texts == ["the moon", "a car"]


def test_embedding_model_gives_unit_vectors_that_separate_topics():
    try:
        vectors = datasets.embed_texts(
            [
                "the rocket reached orbit",
                "the shuttle launch to orbit",
                "engine oil for my car",
            ]
        )
    except (datasets.MissingData, ImportError) as error:
        pytest.skip(f"embedding model not installed (make bench-data): {error}")
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
