"""Warm starts for any Optuna sampler: the unvisited seeds first, then the wrapped sampler's proposals.

The tuner's own sampler proposes its seeds itself; this wrapper gives Optuna's samplers (TPE, GP,
random search) the same first configs, so that a choice of sampler changes only what comes after.
Seeds are proposed rather than enqueued, as the tuner's own sampler does, so workers sharing a study
never race for a waiting trial and a resumed study skips the seeds it already tried.

After the seeds, the wrapped sampler's proposals are drawn BATCH at a time from one state of its
model, so that the study can compile them all while the first is timed (`ahead`): on a GPU each
config takes ~1.75 s to compile and ~10 ms to time, so a sampler asked one config at a time leaves
the GPU idle for every compile. The price is a model updated every BATCH configs instead of after
each one (NOTES.md, "Compile-ahead for every sampler").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner.samplers._neighbourhood import distributions, neighbours, same_schedule, visited
from tuner.space import Config

# Proposals drawn at once from the wrapped sampler's model (see above).
BATCH = 4


class SeedsFirstSampler(BaseSampler):
    """Proposes each seed not yet visited, in order; then what sampler proposes, never a visited config.

    A study times no config twice, and Optuna's samplers learn nothing from a trial that was not
    measured: GP, which models completed trials only, proposed an already pruned config again and
    again (5000 repeats in one replayed study before this). So a proposal of a visited config is
    moved to its nearest unvisited neighbour (one parameter one step, then two), or to a random
    unvisited config when none is near, and the sampler sees the moved trial as its own.
    """

    def __init__(
        self,
        *,
        sampler: BaseSampler,
        space: Sequence[Config],
        seeds: Sequence[Config] = (),
        seed: int | None = None,
        batch_size: int | None = None,
        params: dict[str, CategoricalDistribution] | None = None,
    ) -> None:
        self._sampler = sampler
        self._batch_size = batch_size  # the study's M: a config whose schedule was measured counts as visited
        self._space = list(space)
        self._members = frozenset(space)
        self._seeds = [c for c in seeds if c in self._members]
        self._distributions = params if params is not None else distributions(space)
        self._keys = tuple(self._distributions)
        self._block_ks = self._distributions["BLOCK_SIZE_K"].choices
        self._rng = np.random.RandomState(seed)
        self._drawn: list[Config] = []  # the rest of the last batch, proposed in order

    @property
    def distributions(self) -> dict[str, CategoricalDistribution]:
        """One categorical parameter per key of the space."""
        return self._distributions

    @property
    def sampler(self) -> BaseSampler:
        """The wrapped sampler, which proposes every config after the seeds."""
        return self._sampler

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # Every parameter is chosen here at once, so that the whole config can be checked.
        return dict(self._distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, object]:
        tried = visited(study.get_trials(deepcopy=False))
        seed = next((c for c in self._seeds if c not in tried), None)
        if seed is not None:
            return seed.params(self._keys)
        seen = {same_schedule(c, self._batch_size) for c in tried}
        self._drawn = [c for c in self._drawn if same_schedule(c, self._batch_size) not in seen]
        if not self._drawn:
            self._drawn = self._draw(study, trial, tried, seen)
        return self._drawn.pop(0).params(self._keys)

    def ahead(self, trials: Sequence[FrozenTrial], limit: int) -> list[Config]:
        """The configs this sampler proposes next, as far as it knows them: to compile ahead."""
        tried = visited(trials)
        return [*(c for c in self._seeds if c not in tried), *self._drawn][:limit]

    def _draw(self, study: Study, trial: FrozenTrial, tried: set[Config], seen: set[Config]) -> list[Config]:
        """Up to BATCH distinct unvisited proposals of the wrapped sampler, from its model as it is now."""
        batch: list[Config] = []
        for _ in range(BATCH):
            config = self._propose(study, trial, tried, seen)
            if same_schedule(config, self._batch_size) in seen:  # every schedule measured (see _unvisited_near)
                return batch or [config]
            batch.append(config)
            seen.add(same_schedule(config, self._batch_size))
        return batch

    def _propose(self, study: Study, trial: FrozenTrial, tried: set[Config], seen: set[Config]) -> Config:
        """The wrapped sampler's next config, moved to the nearest unvisited one if it was visited."""
        params = self._sampler.sample_relative(study, trial, self._sampler.infer_relative_search_space(study, trial))
        for name, distribution in self._distributions.items():
            if name not in params:  # what Optuna would otherwise ask the sampler one parameter at a time
                params[name] = self._sampler.sample_independent(study, trial, name, distribution)
        proposed = Config.from_sglang(
            {name: value if name == "SWAP_AB" else int(value) for name, value in params.items()}
        )
        if same_schedule(proposed, self._batch_size) in seen or proposed not in self._members:
            return self._unvisited_near(proposed, tried, seen)
        return proposed

    def _unvisited_near(self, config: Config, tried: set[Config], seen: set[Config]) -> Config:
        def unseen(c: Config) -> bool:
            return same_schedule(c, self._batch_size) not in seen

        near = (c for c in neighbours(config, self._block_ks, self._keys) if c in self._members and unseen(c))
        found = next(near, None)
        if found is not None:
            return found
        rest = [c for c in self._space if unseen(c)]
        if rest:
            return rest[self._rng.randint(len(rest))]
        # Every schedule measured: propose the very config measured for this one, which the objective
        # records as a repeat without timing it (a twin of it would be timed).
        schedule = same_schedule(config, self._batch_size)
        return next((c for c in tried if same_schedule(c, self._batch_size) == schedule), config)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> object:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._sampler.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()
        self._rng.seed()
