"""The samplers a run can choose: each tries the warm starts first, times no config twice, spends the budget."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.samplers import GPSampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from tests.tuner.synthetic import synthetic_rows, write_landscape
from tuner.benchmarkers import ReplayBenchmarker
from tuner.samplers import NeighbourhoodSampler, SeedsFirstSampler, distributions, make_sampler, neighbours
from tuner.space import SAMPLER, STATUS, Config, Problem, config_of, default_config, search_space
from tuner.study import TuneOptions, study_name, timed_trials, tune_problem

PROBLEM = Problem(N=256, K=512, M=16)
DEFAULT = default_config(128, 128)
SEEDS = [
    DEFAULT,
    Config(block_m=16, block_n=32, block_k=128, group_m=1, num_warps=4, num_stages=3),
    Config(block_m=32, block_n=64, block_k=64, group_m=16, num_warps=8, num_stages=2),
]
CHOICES = ["local", "tpe", "gp", "random"]


def bench() -> ReplayBenchmarker:
    return ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))


def study_of(storage, replay: ReplayBenchmarker) -> optuna.Study:
    return optuna.load_study(
        study_name=study_name(PROBLEM, replay.device_name, replay.kind, replay.software), storage=storage
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [("auto", NeighbourhoodSampler), ("local", NeighbourhoodSampler), ("tpe", TPESampler), ("gp", GPSampler),
     ("random", RandomSampler)],
)  # fmt: skip
def test_each_name_builds_its_sampler(name, kind):
    sampler = make_sampler(name, space=search_space(128), seeds=SEEDS, seed=0)
    inner = sampler.sampler if isinstance(sampler, SeedsFirstSampler) else sampler
    assert type(inner) is kind


def test_an_unknown_sampler_names_the_flag():
    with pytest.raises(ValueError, match=r"--sampler must be one of auto, local, tpe, gp, random, but got 'cmaes'"):
        TuneOptions(sampler="cmaes")


@pytest.mark.parametrize("name", CHOICES)
def test_every_sampler_tries_the_warm_starts_first(name):
    storage = optuna.storages.InMemoryStorage()
    replay = bench()
    tune_problem(storage, PROBLEM, replay, TuneOptions(trials=6, seed=0, sampler=name), SEEDS)
    trials = study_of(storage, replay).trials
    assert [config_of(t) for t in trials[:3]] == SEEDS


# GP is the slow one: 24 configs, past its 10 random startup trials, fit its model on the categorical
# parameters (Hamming distance) in well under a second each here.
@pytest.mark.parametrize("name", CHOICES)
def test_every_sampler_spends_the_budget_without_timing_a_config_twice(name):
    storage = optuna.storages.InMemoryStorage()
    replay = bench()
    result = tune_problem(storage, PROBLEM, replay, TuneOptions(trials=24, seed=1, sampler=name), SEEDS)
    trials = study_of(storage, replay).trials
    measured = [config_of(t) for t in timed_trials(study_of(storage, replay))]
    assert result.timed == replay.measurements == len(measured) == len(set(measured)) == 24
    # Nor a schedule twice: at M = 16 a config with BLOCK_SIZE_M >= 16 launches the same schedule
    # whatever its GROUP_SIZE_M, and only the seeds (none of them twins here) are proposed as given.
    assert len({c.schedule_key(PROBLEM.M) for c in measured}) == 24
    # A proposal of a visited config is moved before it costs a trial: no repeat is even recorded.
    assert len(trials) == 24 and not [t for t in trials if t.user_attrs.get(STATUS) == "repeat"]


class _Stuck(RandomSampler):
    """A sampler that learns nothing from what was measured: it proposes one config forever."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        return DEFAULT.as_sglang()[param_name]


def test_a_sampler_stuck_on_a_visited_config_is_moved_to_its_nearest_unvisited_neighbours():
    # As GP did on pruned configs, which it does not model: thousands of repeats in one study.
    storage = optuna.storages.InMemoryStorage()
    replay = bench()
    space = search_space(128)
    sampler = SeedsFirstSampler(sampler=_Stuck(), space=space, seeds=[], seed=0)
    name = study_name(PROBLEM, replay.device_name, replay.kind, replay.software)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler)
    for _ in range(5):
        trial = study.ask()
        for key, distribution in sampler.infer_relative_search_space(study, trial).items():
            trial.suggest_categorical(key, distribution.choices)
        study.tell(trial, 1.0)
    near = [c for c in neighbours(DEFAULT, (64, 128)) if c in space]
    assert [config_of(t) for t in study.trials] == [DEFAULT, *near[:4]]


@pytest.mark.parametrize(("batch_size", "twins"), [(1, False), (128, True), (None, True)])
def test_local_search_proposes_no_config_whose_schedule_was_measured(batch_size, twins):
    # The default's tiles are 64 rows: at M = 1 its GROUP_SIZE_M twins launch its schedule, at
    # M = 128 they do not, and without a batch size the sampler cannot tell (and proposes them).
    storage = optuna.storages.InMemoryStorage()
    sampler = NeighbourhoodSampler(space=search_space(128), seeds=[DEFAULT], seed=0, batch_size=batch_size)
    study = optuna.create_study(storage=storage, sampler=sampler)
    trial = study.ask()
    for key, distribution in sampler.infer_relative_search_space(study, trial).items():
        trial.suggest_categorical(key, distribution.choices)
    study.tell(trial, 1.0)
    proposed = sampler.candidates(study.get_trials(deepcopy=False), limit=100)  # its whole neighbourhood
    group_twins = {replace(DEFAULT, group_m=g) for g in (1, 16, 64)}
    assert bool(group_twins & set(proposed)) is twins
    assert proposed and DEFAULT not in proposed


def _neighbourhood(space: list[Config], ranking: list[Config]) -> list[Config]:
    """What local search proposes after timing the default alone, in order: the default's whole neighbourhood."""
    sampler = NeighbourhoodSampler(space=space, seeds=[DEFAULT], seed=0, batch_size=128, ranking=ranking)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    for key, distribution in sampler.infer_relative_search_space(study, trial).items():
        trial.suggest_categorical(key, distribution.choices)
    study.tell(trial, 1.0)
    assert config_of(study.trials[0]) == DEFAULT
    return sampler.candidates(study.get_trials(deepcopy=False), limit=len(space))


def test_with_a_prior_local_search_tries_a_configs_neighbours_in_the_priors_order():
    space = search_space(128)
    near = [c for c in neighbours(DEFAULT, (64, 128)) if c in space]  # the fixed order of the parameters
    assert _neighbourhood(space, ranking=[]) == near
    assert _neighbourhood(space, ranking=near[::-1]) == near[::-1]


def test_a_hopper_neighbour_takes_its_base_configs_rank_in_the_priors_order():
    # The prior ranks base configs: ranking the default first puts its own split and swap moves first.
    space = search_space(128, "hopper")
    near = [c for c in neighbours(DEFAULT, (64, 128), tuple(distributions(space))) if c in space]
    own = [c for c in near if replace(c, split_k=1, swap_ab=False) == DEFAULT]
    assert len(own) == 2  # SPLIT_K 2 and the swap (SPLIT_K 1 is the default itself)
    assert _neighbourhood(space, ranking=[DEFAULT]) == own + [c for c in near if c not in own]


def test_a_hopper_neighbour_takes_the_rank_of_its_base_configs_best_split():
    # Where splits win (the recorded Hopper grids) a base config ranks low at SPLIT_K 1 and first split:
    # ranked by the former, 16-config studies tried every move to a base whose unsplit config ranked
    # higher before the one stage move to the optimum.
    space = search_space(128, "hopper")
    deeper, narrower = replace(DEFAULT, num_stages=4), replace(DEFAULT, block_n=64)
    proposed = _neighbourhood(space, ranking=[replace(deeper, split_k=8), narrower, deeper])
    bases = [replace(c, split_k=1, swap_ab=False) for c in proposed]
    first = bases.count(deeper)
    assert first and bases[:first] == [deeper] * first
    assert bases[first : first + bases.count(narrower)] == [narrower] * bases.count(narrower)


def test_a_base_configs_splits_and_swaps_come_in_the_priors_order():
    deeper = replace(DEFAULT, num_stages=4)
    split = replace(deeper, split_k=2)  # a move of two parameters, after the stage move in the fixed order
    assert _neighbourhood(search_space(128, "hopper"), ranking=[split, deeper])[:2] == [split, deeper]


def test_a_resumed_study_skips_the_warm_starts_it_tried_and_keeps_the_sampler_that_made_it():
    # One study is one search: a larger --trials extends it with its own sampler; another --sampler
    # applies to new studies (the run's announcement says so).
    storage = optuna.storages.InMemoryStorage()
    replay = bench()
    tune_problem(storage, PROBLEM, replay, TuneOptions(trials=2, seed=0), SEEDS)
    assert study_of(storage, replay).user_attrs[SAMPLER] == "local"  # what auto chose
    tune_problem(storage, PROBLEM, replay, TuneOptions(trials=5, seed=0, sampler="tpe"), SEEDS)
    study = study_of(storage, replay)
    assert [config_of(t) for t in study.trials[:3]] == SEEDS and len(study.trials) == 5
    assert study.user_attrs[SAMPLER] == "local" and study.user_attrs["budget"] == 5


def test_a_seed_whose_trial_was_interrupted_is_tried_again_on_resume():
    storage = optuna.storages.InMemoryStorage()
    replay = bench()
    name = study_name(PROBLEM, replay.device_name, replay.kind, replay.software)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    study.enqueue_trial(SEEDS[0].as_sglang())
    interrupted = study.ask()
    for key, distribution in distributions(search_space(128)).items():
        interrupted.suggest_categorical(key, distribution.choices)
    interrupted.set_user_attr(STATUS, "interrupted")
    study.tell(interrupted, state=TrialState.FAIL)
    tune_problem(storage, PROBLEM, replay, TuneOptions(trials=3, seed=0, sampler="random"), SEEDS)
    assert [config_of(t) for t in study_of(storage, replay).trials[1:4]] == SEEDS


def test_the_command_line_takes_a_sampler_and_records_it(tmp_path):
    import tuner.cli.run

    landscape = write_landscape(tmp_path / "land.csv", [(PROBLEM.N, PROBLEM.K)], [PROBLEM.M])
    url = f"sqlite:///{tmp_path}/s.db"
    argv = ["--N", str(PROBLEM.N), "--K", str(PROBLEM.K), "--batch-size", str(PROBLEM.M), "--trials", "12",
            "--replay", str(landscape), "--storage", url, "--save-path", str(tmp_path / "cfg"),
            "--no-prior"]  # fmt: skip
    assert tuner.cli.run.main([*argv, "--sampler", "gp"]) == 0
    (summary,) = optuna.get_all_study_summaries(url)
    assert summary.user_attrs[SAMPLER] == "gp"
    assert tuner.cli.run.main([*argv, "--sampler", "cmaes"]) == 2


class _Compiles(ReplayBenchmarker):
    """Replay that notes, for each config, how many measurements had been made when it was first prepared."""

    def __init__(self) -> None:
        super().__init__(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
        self.prepared_at: dict[Config, int] = {}
        self.measured: list[Config] = []

    def prepare(self, problem, configs, *, replace=False) -> None:
        for config in configs:
            self.prepared_at.setdefault(config, len(self.measured))

    def measure(self, problem, config, *, prune_above_us=None):
        self.measured.append(config)
        return super().measure(problem, config, prune_above_us=prune_above_us)


@pytest.mark.parametrize("name", CHOICES)
def test_every_sampler_names_its_next_configs_to_compile_ahead(name):
    # On a GPU a config compiles for ~1.75 s and is timed in ~10 ms: a config first asked for when it
    # is measured leaves the GPU idle for its compile. Before, only local search named its next ones.
    replay = _Compiles()
    tune_problem(
        optuna.storages.InMemoryStorage(), PROBLEM, replay, TuneOptions(trials=24, seed=0, sampler=name), SEEDS
    )
    ahead = [i for i, config in enumerate(replay.measured) if replay.prepared_at.get(config, i) < i]
    after_seeds = len(replay.measured) - len(SEEDS)
    assert len(ahead) - (len(SEEDS) - 1) >= 0.6 * after_seeds, (name, len(ahead), len(replay.measured))
