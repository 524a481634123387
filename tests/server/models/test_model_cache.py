"""The model cache: bounded by bytes, least recently used out, keyed by SHA-256."""

import hashlib

import pytest

from alquery.server.errors import InvalidRequestError, UnknownModelError
from alquery.server.models.cache import ModelCache
from onnx_models import mlp

MODELS = [mlp(64, 32, 3, seed=seed) for seed in range(3)]
SIZE = max(len(m) for m in MODELS)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_model_is_found_by_the_hash_of_its_bytes():
    cache = ModelCache(10 * SIZE, SIZE, threads=1)
    loaded = cache.add(MODELS[0], "m")
    assert loaded.sha256 == sha(MODELS[0]) and loaded.size_bytes == len(MODELS[0])
    assert cache.get(sha(MODELS[0]).upper(), "m") is loaded
    assert cache.add(MODELS[0], "m") is loaded
    assert cache.size_bytes == len(MODELS[0])


def test_adding_past_the_byte_limit_evicts_the_least_recently_used():
    cache = ModelCache(2 * SIZE, SIZE, threads=1)
    cache.add(MODELS[0], "m")
    cache.add(MODELS[1], "m")
    cache.get(sha(MODELS[0]), "m")  # now the most recent
    cache.add(MODELS[2], "m")
    assert sha(MODELS[1]) not in cache
    assert sha(MODELS[0]) in cache and sha(MODELS[2]) in cache
    assert cache.evictions == 1
    assert cache.size_bytes == len(MODELS[0]) + len(MODELS[2]) <= 2 * SIZE


def test_an_unknown_hash_names_the_hash():
    cache = ModelCache(SIZE, SIZE, threads=1)
    unknown = "abc123" + "0" * 58
    with pytest.raises(UnknownModelError, match="^f: this server holds no model "
                       f"with SHA-256 '{unknown}'"):
        cache.get(unknown, "f")


def test_a_malformed_hash_is_an_invalid_request():
    cache = ModelCache(SIZE, SIZE, threads=1)
    with pytest.raises(InvalidRequestError, match="^f: 'abc123' is not a SHA-256"):
        cache.get("abc123", "f")


def test_a_model_larger_than_the_cache_is_served_but_not_kept():
    cache = ModelCache(SIZE - 1, SIZE, threads=1)
    loaded = cache.add(MODELS[0], "m")
    assert loaded.session is not None
    assert sha(MODELS[0]) not in cache and cache.size_bytes == 0


def test_hits_misses_evictions_and_bytes_are_counted():
    from prometheus_client import CollectorRegistry

    from alquery.server.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    cache = ModelCache(2 * SIZE, SIZE, threads=1, metrics=metrics)
    cache.add(MODELS[0], "m")  # miss
    cache.add(MODELS[0], "m")  # hit
    cache.get(sha(MODELS[0]), "m")  # hit
    cache.add(MODELS[1], "m")  # miss
    cache.add(MODELS[2], "m")  # miss, evicts MODELS[0]
    with pytest.raises(UnknownModelError):
        cache.get(sha(MODELS[0]), "m")  # miss

    def value(name, **labels):
        return metrics.registry.get_sample_value(name, labels)

    assert value("alquery_model_cache_lookups_total", result="hit") == 2
    assert value("alquery_model_cache_lookups_total", result="miss") == 4
    assert value("alquery_model_cache_evictions_total") == 1
    assert value("alquery_model_cache_bytes") == len(MODELS[1]) + len(MODELS[2])
