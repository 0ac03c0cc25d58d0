"""Scorers on hand-made probabilities, selectors on known utilities, coverage on real blobs."""

from __future__ import annotations

import numpy as np
import pytest

from retrain_loop.strategies import (
    STRATEGIES,
    StrategyError,
    coverage_order,
    entropy,
    farthest_first,
    feature_scale,
    get_strategy,
    least_confident,
    margin,
    mix_random,
    prefer_label,
    random,
    sort_by,
    spread_near_copies,
)

# Rows in order of certainty: sure, fairly sure, a coin toss between two labels.
SURE, FAIRLY, TOSS = [1.0, 0.0, 0.0], [0.8, 0.1, 0.1], [0.5, 0.5, 0.0]
UNCERTAINTY = [margin, least_confident, entropy]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def is_permutation(order: np.ndarray, n: int) -> bool:
    return order.shape == (n,) and np.array_equal(np.sort(order), np.arange(n))


@pytest.mark.parametrize("scorer", UNCERTAINTY)
def test_uncertainty_orders_rows(scorer):
    utility = scorer(np.array([FAIRLY, SURE, TOSS]), rng())
    assert utility.shape == (3,)
    assert list(np.argsort(-utility)) == [2, 0, 1]
    assert utility[1] == pytest.approx(0.0)


@pytest.mark.parametrize(("scorer", "expected"), [
    (margin, 1 - (0.6 - 0.3)),
    (least_confident, 1 - 0.6),
    (entropy, -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1))),
])
def test_scorer_values(scorer, expected):
    assert scorer(np.array([[0.3, 0.6, 0.1]]), rng())[0] == pytest.approx(expected)


def test_margin_and_least_confident_disagree_where_they_should():
    # A two-way tie beats a flat-ish row for margin; least_confident looks only at the top.
    proba = np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3]])
    assert margin(proba, rng()).argmax() == 0
    assert least_confident(proba, rng()).argmax() == 1


def test_margin_on_single_column_is_zero():
    utility = margin(np.ones((4, 1)), rng())
    assert np.array_equal(utility, np.zeros(4))


def test_random_uses_the_generator():
    proba = np.full((50, 3), 1 / 3)
    a, b, c = random(proba, rng(1)), random(proba, rng(1)), random(proba, rng(2))
    assert a.shape == (50,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_registry_names():
    assert set(STRATEGIES) == {"margin", "least_confident", "entropy", "random"}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_get_strategy_returns_registered(name):
    assert get_strategy(name) is STRATEGIES[name]


def test_get_strategy_unknown_raises():
    with pytest.raises(StrategyError, match="unknown strategy 'nope'.*margin"):
        get_strategy("nope")


def test_sort_by_is_best_first():
    order, n_sorted = sort_by(np.array([0.1, 0.9, 0.5, 0.3]), np.zeros(4))
    assert list(order) == [1, 2, 3, 0] and n_sorted == 4


def test_sort_by_breaks_ties_by_the_jitter():
    jitter = rng(1).random(30)
    order, _ = sort_by(np.ones(30), jitter)
    assert np.array_equal(order, np.argsort(jitter))


@pytest.mark.parametrize("head", [1, 10, 99])
def test_sort_by_with_a_head_sorts_exactly_a_full_sorts_head(head):
    utility = np.round(rng(3).random(2_000), 2)  # ties at every boundary
    jitter = rng(4).random(2_000)
    full, _ = sort_by(utility, jitter)
    order, n_sorted = sort_by(utility, jitter, head=head)
    assert n_sorted >= head
    assert np.array_equal(order[:n_sorted], full[:n_sorted])
    assert is_permutation(order, 2_000)
    # Every row after the head ranks below it, so sorting the rest completes the full order.
    rest = order[n_sorted:]
    assert utility[rest].max() <= utility[order[n_sorted - 1]]
    rest = rest[sort_by(utility[rest], jitter[rest])[0]]
    assert np.array_equal(np.concatenate([order[:n_sorted], rest]), full)


def test_sort_by_with_a_head_beyond_the_rows_sorts_them_all():
    utility = rng(4).random(20)
    order, n_sorted = sort_by(utility, np.zeros(20), head=50)
    assert np.array_equal(order, np.argsort(-utility)) and n_sorted == 20


def test_prefer_label_favours_likely_and_uncertain():
    proba = np.array([
        [0.0, 0.5, 0.5],    # uncertain, but surely not label 0
        [0.9, 0.1, 0.0],    # likely label 0, fairly sure
        [1.0, 0.0, 0.0],    # surely label 0
        [0.55, 0.45, 0.0],  # likely label 0, uncertain
    ])
    utility = prefer_label(margin(proba, rng()), proba, 0)
    assert list(np.argsort(-utility)[:2]) == [3, 1]
    assert utility[0] == pytest.approx(0.0) and utility[2] == pytest.approx(0.0)


@pytest.mark.parametrize(("share", "batch_size"), [(0.2, 10), (0.5, 4), (1.0, 5), (0.3, 7)])
def test_mix_random_is_a_permutation(share, batch_size):
    order = rng(5).permutation(103)
    out, picks = mix_random(order, share, batch_size, rng(6))
    assert is_permutation(out, 103)
    slots = (np.arange(103) % batch_size) >= batch_size - round(share * batch_size)
    assert sorted(out[slots]) == sorted(picks)  # the picks it reports are the rows in random slots


def test_mix_random_keeps_ranked_rows_in_order_and_slots_random_ones():
    order = np.arange(100)
    out = mix_random(order, 0.2, 10, rng(7))[0].reshape(10, 10)
    ranked = out[:, :8].ravel()
    assert np.all(np.diff(ranked) > 0)  # the non-random slots keep rank order
    assert not np.array_equal(out.ravel(), order)


def test_mix_random_picks_uniformly_from_all_rows():
    # 2 of every 10 slots are random; averaged over seeds they sit mid-pool, not near the top.
    order = np.arange(100)
    means = [mix_random(order, 0.2, 10, rng(s))[0].reshape(10, 10)[:, 8:].mean() for s in range(200)]
    assert np.mean(means) == pytest.approx(49.5, abs=3)


def test_mix_random_share_zero_returns_input():
    order = rng(8).permutation(40)
    assert np.array_equal(mix_random(order, 0.0, 10, rng())[0], order)


def test_mix_random_empty_order():
    assert mix_random(np.empty(0, dtype=np.int64), 0.5, 10, rng())[0].shape == (0,)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_mix_random_share_out_of_range_raises(share):
    with pytest.raises(StrategyError, match="between 0 and 1"):
        mix_random(np.arange(10), share, 5, rng())


def blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """5 tight, well-separated blobs of 200 points each, in shuffled order."""
    g = rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]]) * 10.0
    which = g.permutation(np.repeat(np.arange(5), 200))
    return centres[which] + g.normal(scale=0.5, size=(1000, 2)), which


@pytest.mark.parametrize("seed", range(5))
def test_coverage_order_first_picks_spread_over_blobs(seed):
    X, which = blobs(seed)
    order = coverage_order(X, 5, rng(seed))
    assert is_permutation(order, 1000)
    assert len(set(which[order[:5]])) == 5


def test_coverage_order_empty():
    order = coverage_order(np.empty((0, 3)), 5, rng())
    assert order.shape == (0,)


@pytest.mark.parametrize("k", [1, 7, 50])
def test_coverage_order_k_at_or_beyond_n(k):
    X = rng(9).normal(size=(7, 3))
    assert is_permutation(coverage_order(X, k, rng()), 7)


@pytest.mark.parametrize("X", [np.zeros((10, 3)), np.repeat([[0.0, 0.0], [1.0, 1.0]], 5, axis=0)],
                         ids=["all-equal", "two-distinct"])
def test_coverage_order_duplicate_rows_still_permutation(X):
    assert is_permutation(coverage_order(X, 6, rng()), 10)


def test_farthest_first_finds_rows_far_from_the_labelled_ones_among_the_given_rows():
    gen = rng()
    X = np.vstack([gen.normal(0, 1, (300, 2)), [[40.0, 40.0]], [[-40.0, 40.0]]]).astype(np.float32)
    labelled = X[:20]
    rows = np.arange(10, 302)  # positions are into this subset, not into X
    picks = farthest_first(X, rows, labelled, 2, gen)
    assert sorted(rows[picks].tolist()) == [300, 301]
    assert farthest_first(X, rows[:0], labelled, 2, gen).size == 0


# -- near copies ---------------------------------------------------------------------------------

def test_spread_near_copies_keeps_the_first_of_each_set_and_moves_the_rest_down():
    X = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 0.001], [9.0, 1.0], [5.0, 5.0], [3.0, 3.0]])
    rows = np.arange(len(X))
    order = np.array([0, 2, 1, 4, 3, 5])  # copies of row 0 and of row 1 ranked right below them
    scale = feature_scale(X)
    out = spread_near_copies(order, len(order), X, rows, scale, window=6)
    assert out.tolist() == [0, 1, 3, 5, 2, 4]
    assert sorted(out.tolist()) == sorted(order.tolist())


def test_spread_near_copies_leaves_distinct_rows_and_the_tail_alone():
    X = np.random.default_rng(0).normal(size=(40, 3))
    order = np.random.default_rng(1).permutation(40)
    out = spread_near_copies(order, 20, X, np.arange(40), feature_scale(X), window=10)
    assert out.tolist() == order.tolist()
    X[order[5]] = X[order[1]]  # a copy inside the window; one past the window stays
    X[order[15]] = X[order[2]]
    out = spread_near_copies(order, 20, X, np.arange(40), feature_scale(X), window=10)
    assert out[:9].tolist() == [*order[:5], *order[6:10]] and out[9] == order[5]
    assert out[10:].tolist() == order[10:].tolist()
    # tol=0 is off; a looser tolerance takes rows that differ a little.
    assert spread_near_copies(order, 20, X, np.arange(40), feature_scale(X), 10,
                              tol=0).tolist() == order.tolist()


def test_feature_scale_is_one_for_constant_features():
    X = np.c_[np.arange(10.0), np.full(10, 3.0)]
    scale = feature_scale(X)
    assert scale[1] == 1.0 and scale[0] == pytest.approx(np.arange(10.0).std())
