import numpy as np
import pytest

from alquery.server.strategies.badge import GradientEmbeddings, badge
from alquery.server.strategies.clustering_tools import d2_sampling


class FixedDraws:
    """Returns the given uniforms in turn, in place of a random generator."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


# Residuals p - e_yhat: (-0.5, 0.5) (the tie goes to class 0), (-0.1, 0.1),
# (-0.5, 0.5); squared norms 0.5, 0.02, 0.5.
PROBABILITIES = np.array([[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]])
EMBEDDINGS = np.array([[1.0, 0.0], [10.0, 0.0], [0.0, 1.0]])


def test_first_pick_has_the_largest_gradient_norm_then_d2_draws():
    # ||g||^2 = 0.5 * 1, 0.02 * 100, 0.5 * 1 -> sample 1 first, ||g|| = sqrt 2.
    # To g_1: <r0, r1> <h0, h1> = 0.1 * 10 = 1 -> 0.5 - 2 + 2 = 0.5;
    #         <r2, r1> <h2, h1> = 0.1 * 0 = 0 -> 0.5 + 2 = 2.5.
    # CDF over samples 0, 1, 2: 0.5/3, 0.5/3, 1; a draw of 0.1 lands on 0,
    # a draw of 0.5 on 2.
    low = badge(PROBABILITIES, EMBEDDINGS, 2, FixedDraws(0.1))
    assert low.ranked_indices.tolist() == [1, 0]
    np.testing.assert_allclose(low.scores, [np.sqrt(2), np.sqrt(0.5)])
    high = badge(PROBABILITIES, EMBEDDINGS, 2, FixedDraws(0.5))
    assert high.ranked_indices.tolist() == [1, 2]
    np.testing.assert_allclose(high.scores, [np.sqrt(2), np.sqrt(2.5)])


def test_equal_gradient_norms_go_to_the_lower_position():
    ranking = badge(PROBABILITIES[[0, 2]], EMBEDDINGS[[0, 2]], 1, FixedDraws())
    assert ranking.ranked_indices.tolist() == [0]


def test_factorised_distances_equal_explicit_gradient_embeddings():
    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet(np.ones(4), size=25)
    embeddings = rng.normal(size=(25, 3))
    one_hot = np.eye(4)[probabilities.argmax(axis=1)]
    explicit = ((probabilities - one_hot)[:, :, None] * embeddings[:, None, :]).reshape(
        25, -1
    )
    gradients = GradientEmbeddings(probabilities, embeddings)
    for j in range(25):
        expected = ((explicit - explicit[j]) ** 2).sum(axis=1)
        np.testing.assert_allclose(
            gradients.squared_distances_to(j), expected, rtol=1e-9, atol=1e-12
        )


def test_same_seed_same_batch_and_picks_are_distinct():
    rng = np.random.default_rng(8)
    probabilities = rng.dirichlet(np.ones(3), size=40)
    embeddings = rng.normal(size=(40, 5))

    def run(seed):
        generator = np.random.default_rng(seed)
        return badge(probabilities, embeddings, 12, generator).ranked_indices

    first = run(1)
    assert len(set(first.tolist())) == 12
    np.testing.assert_array_equal(first, run(1))
    assert any(not np.array_equal(first, run(seed)) for seed in range(2, 6))


@pytest.mark.parametrize("draw", [0.0, 0.3, 0.99])
def test_duplicates_are_never_picked_twice(draw):
    # Every gradient is the same, so after the first pick every D^2 is 0 and
    # the draws become uniform over the unpicked samples.
    probabilities = np.tile([0.7, 0.3], (4, 1))
    embeddings = np.ones((4, 2))
    ranking = badge(probabilities, embeddings, 4, FixedDraws(draw, draw, draw))
    assert sorted(ranking.ranked_indices.tolist()) == [0, 1, 2, 3]
    assert ranking.ranked_indices[0] == 0


def explicit_gradients(probabilities, embeddings):
    """The n x (n_classes * n_features) gradient embeddings, materialised."""
    one_hot = np.eye(probabilities.shape[1])[probabilities.argmax(axis=1)]
    outer = (probabilities - one_hot)[:, :, None] * embeddings[:, None, :]
    return outer.reshape(len(probabilities), -1)


def test_factorised_distances_stay_at_least_0_near_duplicates():
    # Large embeddings, duplicated and nudged by far less than the rounding
    # of the expansion, plus two confident samples whose gradient is 0.
    rng = np.random.default_rng(6)
    base = rng.normal(size=(1, 6)) * 1e4
    embeddings = np.vstack([base, base, base + 1e-9, rng.normal(size=(3, 6))])
    probabilities = np.vstack(
        [np.tile([0.3, 0.3, 0.4], (3, 1)), [[1.0, 0, 0], [0, 1.0, 0], [0.2, 0.5, 0.3]]]
    )
    explicit = explicit_gradients(probabilities, embeddings)
    gradients = GradientEmbeddings(probabilities, embeddings)
    scale = gradients.squared_norms.max()
    for j in range(len(embeddings)):
        got = gradients.squared_distances_to(j)
        expected = ((explicit - explicit[j]) ** 2).sum(axis=1)
        assert (got >= 0.0).all()
        # The expansion loses about eps * ||g||^2 near 0, never more.
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12 * scale)
    # Zero gradients are exactly 0 apart.
    assert gradients.squared_distances_to(3)[4] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_picks_equal_those_on_materialised_gradient_embeddings(seed):
    rng = np.random.default_rng(10 + seed)
    probabilities = rng.dirichlet(np.ones(5), size=60)
    embeddings = rng.normal(size=(60, 7))
    explicit = explicit_gradients(probabilities, embeddings)
    norms = (explicit**2).sum(axis=1)

    def explicit_distances_to(j):
        return ((explicit - explicit[j]) ** 2).sum(axis=1)

    first = int(np.argmax(norms))
    expected, _ = d2_sampling(
        first, explicit_distances_to, 20, np.random.default_rng(seed)
    )
    ranking = badge(probabilities, embeddings, 20, np.random.default_rng(seed))
    np.testing.assert_array_equal(ranking.ranked_indices, expected)
