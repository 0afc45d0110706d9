"""CloseInterest: which runs other servers wait on, for how long."""

from __future__ import annotations

from cadenza.engine import _close_interest
from cadenza.engine._close_interest import CloseInterest


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_interest_lasts_its_keep_time_from_the_last_announcement() -> None:
    clock = FakeClock()
    interest = CloseInterest(keep_s=10, now=clock)
    assert not interest.wanted("run-a")
    interest.note("run-a")
    clock.now += 9
    assert interest.wanted("run-a")
    interest.note("run-a")  # the waiter re-checked: the interest is renewed
    clock.now += 9
    assert interest.wanted("run-a")
    clock.now += 2
    assert not interest.wanted("run-a")
    assert not interest.wanted("run-b")


def test_expired_interests_are_dropped_and_the_count_is_bounded(monkeypatch) -> None:
    clock = FakeClock()
    interest = CloseInterest(keep_s=5, now=clock)
    for i in range(10):
        interest.note(f"old-{i}")
    clock.now += 6
    interest.note("new")
    assert len(interest) == 1  # the ten expired ones went when the new one came
    monkeypatch.setattr(_close_interest, "MAX_INTERESTS", 3)
    for i in range(5):
        interest.note(f"run-{i}")
    assert len(interest) == 3
    assert [interest.wanted(f"run-{i}") for i in range(5)] == [False, False, True, True, True]
