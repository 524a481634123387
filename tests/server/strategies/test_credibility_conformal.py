import numpy as np

from alquery.server.selection import top_k
from alquery.server.strategies.credibility_conformal import (
    conformal,
    nonconformity_scores,
    p_values,
    trust_score,
)
from alquery.v1 import query_pb2

C = query_pb2.CredibilityStrategy
ONE_MINUS_P = C.NONCONFORMITY_ONE_MINUS_PROBABILITY

# Calibration scores 1 - p_y: 0.1, 0.4, 0.3, 0.8 (labels 0, 0, 1, 0).
VALIDATION = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
LABELS = np.array([0, 0, 1, 0])
POOL = np.array([[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]])


def run_conformal(
    pool, validation, labels, nonconformity=ONE_MINUS_P, class_conditional=False, seed=0
):
    return conformal(
        pool,
        validation,
        labels,
        nonconformity,
        class_conditional,
        np.random.default_rng(seed),
    )


def test_conformal_credibility_and_confidence():
    # Pool 0: s = 0.3, 0.7. #{a >= 0.3} = 3 (0.3 itself counts: the same
    # float 1 - 0.7), p = 4/5; #{a >= 0.7} = 1, p = 2/5.
    # Pool 1: s = 0.5, 0.5: one a >= 0.5 -> p = 2/5 for both.
    # Pool 2: s = 0.9, 0.1: p = 1/5 and 5/5.
    result = run_conformal(POOL, VALIDATION, LABELS)
    np.testing.assert_allclose(result.scores, [0.8, 0.4, 1.0])
    np.testing.assert_allclose(result.extras["confidence"], [0.6, 0.6, 0.8])
    assert top_k(result.scores, 3, higher_first=False).ranked_indices.tolist() == [
        1,
        0,
        2,
    ]


def test_conformal_ties_go_to_the_lower_pool_position():
    # Pool rows 0 and 2 are equal, so their credibility (0.4) ties.
    pool = np.array([[0.5, 0.5], [0.7, 0.3], [0.5, 0.5]])
    result = run_conformal(pool, VALIDATION, LABELS)
    assert top_k(result.scores, 3, higher_first=False).ranked_indices.tolist() == [
        0,
        2,
        1,
    ]


def test_mondrian_calibrates_each_class_on_its_own_samples():
    # Class 0 calibrates on {0.1, 0.4, 0.8} (n=3), class 1 on {0.3} (n=1).
    # Pool 0: p_0 = (2 + 1) / 4, p_1 = (0 + 1) / 2. Pool 1: p_0 = 2/4,
    # p_1 = 1/2. Pool 2: p_0 = 1/4, p_1 = (1 + 1) / 2.
    result = run_conformal(POOL, VALIDATION, LABELS, class_conditional=True)
    np.testing.assert_allclose(result.scores, [0.75, 0.5, 1.0])
    np.testing.assert_allclose(result.extras["confidence"], [0.5, 0.5, 0.75])


def test_mondrian_falls_back_to_all_samples_for_a_missing_class():
    # Class 2 is absent from the validation labels. Scores 1 - p_y: 0.2
    # (class 0), 0.7 (class 1). Pool s = 0.8, 0.8, 0.4: p_0 = 1/2 (on
    # {0.2}), p_1 = 1/2 (on {0.7}), p_2 on both: (1 + 1) / 3.
    validation = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]])
    result = run_conformal(
        np.array([[0.2, 0.2, 0.6]]),
        validation,
        np.array([0, 1]),
        class_conditional=True,
    )
    np.testing.assert_allclose(result.scores, [2 / 3])
    np.testing.assert_allclose(result.extras["confidence"], [0.5])


def test_aps_scores_and_p_values():
    # s(x, c) = sum of the strictly larger p + p_c.
    p = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(
        nonconformity_scores(p, C.NONCONFORMITY_APS),
        [[0.5, 0.8, 1.0], [0.4, 0.4, 1.0], [0.9, 0.9, 0.8]],
    )
    # Randomised: the larger ones plus u * p_c.
    np.testing.assert_allclose(
        nonconformity_scores(
            p, C.NONCONFORMITY_APS_RANDOMIZED, np.array([0.5, 0.5, 0.0])
        ),
        [[0.25, 0.65, 0.9], [0.2, 0.2, 0.9], [0.8, 0.8, 0.0]],
    )
    # Calibrate on those rows with labels 1, 0, 2: a = 0.8, 0.4, 0.8. The
    # first row as a pool sample: s = 0.5, 0.8, 1.0 -> p = 3/4, 3/4, 1/4.
    result = run_conformal(p[:1], p, np.array([1, 0, 2]), C.NONCONFORMITY_APS)
    np.testing.assert_allclose(result.scores, [0.75])
    np.testing.assert_allclose(result.extras["confidence"], [0.25])


def test_randomized_aps_draws_validation_then_pool_from_the_seed():
    rng = np.random.default_rng(5)
    validation = rng.dirichlet(np.ones(3), size=20)
    labels = rng.integers(0, 3, size=20)
    pool = rng.dirichlet(np.ones(3), size=8)

    draws = np.random.default_rng(11)
    u_validation, u_pool = draws.random(20), draws.random(8)
    randomized = C.NONCONFORMITY_APS_RANDOMIZED
    calibration = nonconformity_scores(validation, randomized, u_validation)
    values = p_values(
        calibration[np.arange(20), labels],
        nonconformity_scores(pool, randomized, u_pool),
    )
    result = run_conformal(pool, validation, labels, randomized, seed=11)
    np.testing.assert_allclose(result.scores, values.max(axis=1))
    again = run_conformal(pool, validation, labels, randomized, seed=11)
    np.testing.assert_array_equal(result.scores, again.scores)


def test_conformal_averages_passes():
    pool = np.stack([POOL, POOL[::-1]], axis=1)
    result = run_conformal(pool, VALIDATION, LABELS)
    # Averages: (0.4, 0.6), (0.5, 0.5), (0.4, 0.6): s = 0.6, 0.4 -> p_0 =
    # #{a >= 0.6} + 1 = 2/5, p_1 = #{a >= 0.4} + 1 = 3/5.
    np.testing.assert_allclose(result.scores, [0.6, 0.4, 0.6])


# trust_score ---------------------------------------------------------------

# Labeled on a line: class 0 at 0 and 1, class 1 at 10, class 2 at 4;
# class 3 has no labeled sample.
LABELED_EMBEDDINGS = np.array([[0.0], [1.0], [10.0], [4.0]])
LABELED_LABELS = np.array([0, 0, 1, 2])


def predicted_as(classes, n_classes=4):
    p = np.full((len(classes), n_classes), 0.1)
    p[np.arange(len(classes)), classes] = 0.7
    return p


def test_trust_score_hand_computed():
    pool = np.array([[2.0], [5.0], [5.0], [7.0], [3.0], [4.0], [8.0]])
    predicted = [0, 2, 0, 3, 0, 2, 1]
    scores = trust_score(
        predicted_as(predicted), pool, LABELED_EMBEDDINGS, LABELED_LABELS, 0.0, 10
    )
    # 2 as 0: nearest other is class 2 at 2, own at 1 -> 2.
    # 5 as 2: class 0 at 4 over 1 -> 4. 5 as 0: class 2 at 1 over 4 -> 0.25.
    # 7 as 3: no labeled sample of class 3 -> 0. 3 as 0: 1 / 2 = 0.5.
    # 4 as 2: on its class's sample -> 3 / 1e-12. 8 as 1: 4 / 2 = 2.
    np.testing.assert_allclose(scores, [2, 4, 0.25, 0, 0.5, 3e12, 2], rtol=1e-9)
    # Lowest first; pool 0 and pool 6 tie at 2 -> lower position first.
    ranking = top_k(scores, 7, higher_first=False)
    assert ranking.ranked_indices.tolist() == [3, 2, 4, 0, 6, 1, 5]


def test_trust_score_density_filter_drops_the_sparse_samples():
    # Class 0 at 0, 0.1, 0.2 and an outlier at 5; class 1 at 10. With k=2
    # (itself and its nearest), radii 0.1, 0.1, 0.1, 4.8; the 75th
    # percentile (alpha=0.25) is 0.1 + 0.25 * 4.7 = 1.275, so 5 is dropped.
    # Class 1 has one sample, radius 0, kept. Pool 4.5 predicted 0:
    # unfiltered 5.5 / 0.5 = 11; filtered 5.5 / 4.3.
    labeled = np.array([[0.0], [0.1], [0.2], [5.0], [10.0]])
    labels = np.array([0, 0, 0, 0, 1])
    pool, p = np.array([[4.5]]), np.array([[0.9, 0.1]])
    unfiltered = trust_score(p, pool, labeled, labels, 0.0, 2)
    filtered = trust_score(p, pool, labeled, labels, 0.25, 2)
    np.testing.assert_allclose(unfiltered, [11.0], rtol=1e-9)
    np.testing.assert_allclose(filtered, [5.5 / 4.3], rtol=1e-9)


def test_trust_score_matches_a_brute_force_distance_search():
    rng = np.random.default_rng(4)
    labeled = rng.normal(size=(30, 3))
    labels = rng.integers(0, 3, size=30)
    pool = rng.normal(size=(25, 3))
    p = rng.dirichlet(np.ones(3), size=25)
    predicted = p.argmax(axis=1)
    distances = np.linalg.norm(pool[:, None, :] - labeled[None, :, :], axis=2)
    expected = []
    for i in range(25):
        own = distances[i, labels == predicted[i]].min()
        other = distances[i, labels != predicted[i]].min()
        expected.append(other / (own + 1e-12))
    np.testing.assert_allclose(
        trust_score(p, pool, labeled, labels, 0.0, 10), expected, rtol=1e-9
    )
