import numpy as np

from alquery.server.strategies.diversity_coverage import probcover

LINE = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])


def test_probcover_by_hand():
    # Radius 1.5: balls 0:{0,1}, 1:{0,1,2}, 2:{1,2}, 10:{10,11}, 11:{10,11};
    # counts 2, 3, 2, 2, 2. Pick x=1 (3). Then 10 and 11 tie at 2: position
    # 3 wins. Everything is covered: the lowest unpicked, 0, with score 0.
    ranking = probcover(LINE, 3, radius=1.5)
    assert ranking.ranked_indices.tolist() == [1, 3, 0]
    np.testing.assert_array_equal(ranking.scores, [3, 2, 0])


def test_probcover_starts_from_the_labeled_coverage():
    # Labeled 10.5 covers 10 and 11; x=1 covers the rest, then 0 and 2 come
    # by position with score 0.
    labeled = np.array([[10.5]])
    ranking = probcover(LINE, 3, radius=1.5, labeled_embeddings=labeled)
    assert ranking.ranked_indices.tolist() == [1, 0, 2]
    np.testing.assert_array_equal(ranking.scores, [3, 0, 0])


def test_probcover_ties_go_to_the_lower_position():
    ranking = probcover(np.array([[5.0], [0.0]]), 2, radius=1.0)
    assert ranking.ranked_indices.tolist() == [0, 1]
    np.testing.assert_array_equal(ranking.scores, [1, 1])


def test_probcover_counts_equal_a_dense_computation(monkeypatch):
    # Small blocks force many chunks; the greedy is checked against a dense
    # greedy on the full ball matrix.
    monkeypatch.setattr(
        "alquery.server.strategies.diversity_coverage.CHUNK_ELEMENTS", 64
    )
    x = np.random.default_rng(3).normal(size=(80, 3))
    inside = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2) <= 1.0
    covered, expected = np.zeros(80, dtype=bool), []
    for _ in range(20):
        counts = (inside & ~covered).sum(axis=1)
        counts[expected] = -1
        best = int(np.argmax(counts))
        expected.append(best)
        covered |= inside[best]
    ranking = probcover(x, 20, radius=1.0)
    assert ranking.ranked_indices.tolist() == expected
