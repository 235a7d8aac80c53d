from __future__ import annotations

from mixsup.train.subsets import pick_pixel_slides


def test_pixel_slide_budgets_are_nested_and_keep_a_positive():
    labels = {f"s{i}": int(i < 8) for i in range(12)}  # 8 positive, 4 negative annotated
    for seed in range(5):
        chosen = {n: pick_pixel_slides(labels, n, seed) for n in (12, 6, 3, 1)}
        assert [len(chosen[n]) for n in (12, 6, 3, 1)] == [12, 6, 3, 1]
        assert chosen[1] <= chosen[3] <= chosen[6] <= chosen[12]
        assert sum(labels[s] for s in chosen[1]) == 1
        assert sum(labels[s] for s in chosen[6]) == 4  # 6 x 8/12
    assert len({frozenset(pick_pixel_slides(labels, 3, s)) for s in range(5)}) > 1
    assert pick_pixel_slides(labels, 99, 0) == set(labels)
    assert pick_pixel_slides({"a": 0, "b": 0}, 1, 0) in ({"a"}, {"b"})
