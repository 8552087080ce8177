"""The timing protocol's arithmetic, with CUDA graphs replaced by a clock the test sets.

What is checked: which graphs get captured and how often they replay, how long the measured graph
is, when a config is pruned, and that the reported latency is the median of the measured replays.
"""

from __future__ import annotations

import pytest

from kernels import timing


class FakeGraph:
    def __init__(self, n_launches: int) -> None:
        self.n_launches = n_launches


class FakeClock:
    """Stands in for _capture and _replay_us: a kernel of us_per_launch, replay latencies from a list."""

    def __init__(self, us_per_launch: float, noise: list[float] | None = None) -> None:
        self.us_per_launch = us_per_launch
        self.noise = list(noise or [])
        self.captured: list[int] = []
        self.replayed: list[int] = []

    def capture(self, launch, n_launches: int) -> FakeGraph:
        for i in range(n_launches):
            launch(i)
        self.captured.append(n_launches)
        return FakeGraph(n_launches)

    def replay_us(self, graph: FakeGraph, n_launches: int) -> float:
        assert graph.n_launches == n_launches
        self.replayed.append(n_launches)
        return self.us_per_launch + (self.noise.pop(0) if self.noise else 0.0)


@pytest.fixture
def clock(monkeypatch):
    def install(us_per_launch: float, noise: list[float] | None = None) -> FakeClock:
        fake = FakeClock(us_per_launch, noise)
        monkeypatch.setattr(timing, "_capture", fake.capture)
        monkeypatch.setattr(timing, "_replay_us", fake.replay_us)
        return fake

    return install


def test_a_fast_kernel_is_timed_in_a_graph_that_fills_the_target(clock):
    fake = clock(10.0)
    launched = []
    result = timing.time_launches(launched.append, 4, target_replay_us=1000.0, replays=5)
    # 1000 us / (10 us x 4 sets) = 25 passes over the sets: one graph of 100 launches.
    assert fake.captured == [4, 100]
    assert fake.replayed == [4, 4, 100, *[100] * 5]  # estimate warm-up and read, long warm-up, 5 samples
    assert result.launches_per_replay == 100 and result.median_us == pytest.approx(10.0)
    assert set(launched) == {0, 1, 2, 3}  # every rotating set is used, none beyond


def test_a_slow_kernel_reuses_the_warm_first_graph(clock):
    fake = clock(2000.0)
    result = timing.time_launches(lambda i: None, 2, target_replay_us=1000.0, replays=5)
    assert fake.captured == [2]
    assert fake.replayed == [2, 2, *[2] * 5]
    assert result.estimate_us == result.median_us == pytest.approx(2000.0)


def test_the_graph_length_is_capped(clock):
    fake = clock(0.01)
    result = timing.time_launches(lambda i: None, 3, max_launches=2000)
    assert fake.captured == [3, 2000] and result.launches_per_replay == 2000


def test_a_config_over_the_prune_bound_stops_after_its_estimate(clock):
    fake = clock(500.0)
    result = timing.time_launches(lambda i: None, 2, prune_above_us=400.0)
    assert fake.captured == [2] and fake.replayed == [2, 2]
    assert result.estimate_us == pytest.approx(500.0)
    assert result.median_us is None and result.p20_us is None and result.p80_us is None


def test_the_latency_is_the_median_of_the_measured_replays_only(clock):
    # The warm-up replays read 900 and 800 us over the true 100: they must not move the result.
    clock(100.0, noise=[800.0, 0.0, 800.0, 3.0, -1.0, 2.0, 0.0, 1.0])
    result = timing.time_launches(lambda i: None, 2, target_replay_us=1000.0, replays=5)
    assert result.estimate_us == pytest.approx(100.0)
    assert result.median_us == pytest.approx(101.0)
    assert result.p20_us <= result.median_us <= result.p80_us


@pytest.mark.parametrize(
    ("us_per_launch", "prune_above_us", "gpu_us"),
    [
        (10.0, None, 10.0 * (4 + 4 + 100 + 5 * 100)),  # both graphs, warm-ups included
        (2000.0, None, 2000.0 * 4 * 7),  # the warm first graph only: 7 passes of 4 launches
        (500.0, 400.0, 500.0 * 4 * 2),  # pruned: the estimate's warm-up and read
    ],
)
def test_gpu_time_counts_every_replay(clock, us_per_launch, prune_above_us, gpu_us):
    # What a run's duty cycle adds up: the device's time in every replay, not just the median's.
    clock(us_per_launch)
    result = timing.time_launches(lambda i: None, 4, prune_above_us=prune_above_us, replays=5)
    assert result.gpu_us == pytest.approx(gpu_us)


@pytest.mark.parametrize(
    ("M", "N", "K", "block", "l2"),
    [
        (1, 1024, 2048, (128, 128), 2**20),  # weights dominate: 2 MiB a set, two sets exceed twice a 1 MiB L2
        (1, 64, 128, (128, 128), 2**20),  # a tiny problem needs more sets than max_sets allows: capped
        (300, 200, 700, (128, 128), 2**20),  # activations matter: A is larger than B
        (33, 160, 1000, (32, 32), 2**19),  # [32, 32] blocks: their scales are a part of each set worth counting
    ],
)
def test_the_rotating_inputs_exceed_twice_the_l2(M, N, K, block, l2):
    # Counted on real operand sets: the bytes of every distinct input tensor the rotation reads.
    import torch

    n = timing.rotation_sets_needed(M, N, K, l2_bytes=l2, block_size=block, max_sets=16)
    weights = timing.make_weight_sets(N, K, block, torch.int8, n, device="cpu")
    sets = timing.make_operand_sets(M, weights, block, n)

    def touched(sets) -> int:
        tensors = {t.data_ptr(): t for s in sets for t in s}
        return sum(t.numel() * t.element_size() for t in tensors.values())

    assert n == 16 or touched(sets) >= 2 * l2  # enough to flush twice the L2 ...
    assert n == 2 or touched(sets[:-1]) < 2 * l2  # ... and no more sets than needed
