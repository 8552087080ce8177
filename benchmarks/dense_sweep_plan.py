"""Plan a dense landscape of one shape: the configs a finished tuning found best, and their neighbours, at many M.

    PYTHONPATH=. python benchmarks/dense_sweep_plan.py --storage sqlite:///studies/tuner.sqlite3 \\
        --N 576 --K 7168 --configs-out dense_576x7168_configs.json --landscape dense_576x7168.csv.gz

A replay of the 18 batch sizes says nothing about the M between them, where the coverage check
(tuner.study._coverage) probes; a dense landscape records them. Timing the whole space there would
take days, so this records what the check can compare: the configs that win at any of the shape's
tuned batch sizes (each study's exported entry and its search's best; with --config-files, every
entry of those files) and their one-step neighbours (one parameter one step, as the local search
moves), at every M from 1 to 64 and multiples of 16 at most 12% apart up to --max-m, SGLang's batch
sizes among them. It writes the configs as a JSON list of SGLang entries for `python -m tuner.sweep
--configs`, and prints what that sweep will time, an estimate, and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from tuner.analysis import load_studies, superseded
from tuner.cli._common import add_gemm_flags, gemm_setup
from tuner.export import read_config_file
from tuner.samplers import neighbours
from tuner.space import SPACES, Config, Problem, search_space
from tuner.study import CONFIRMED, best, confirmation_of, dense_batch_sizes

# What a sweep costs on the H100 host (README, "Cost"): a timed config ~30 ms of wall, one compile
# ~1.75 s on one CPU core; a config compiles once per class of M (1, multiples of 16, the rest).
TIMED_S = 0.030
COMPILE_S = 1.75
M_CLASSES = 3


def winners_from_storage(url: str, problem: Problem, space: str, device: str | None) -> list[Config]:
    """The configs that win at the shape's tuned batch sizes: each study's exported entry and its search's best.

    Studies of older software (superseded) are passed over; where several devices or timings tuned
    the shape, --device must name one.
    """
    old = superseded(url)
    records = [
        r
        for r in load_studies(url)
        if r.problem.at(1) == problem.at(1) and r.space == space and r.name not in old
        if device is None or r.device == device
    ]
    found = {(r.device, r.timing) for r in records}
    if not records:
        raise ValueError(f"the storage holds no current {space}-space study of {_shape(problem)}.")
    if len(found) > 1:
        raise ValueError(f"studies of {_shape(problem)} from {sorted(found)}: give --device.")
    configs = []
    for r in sorted(records, key=lambda r: r.problem.M):
        exported = (confirmation_of(r.study.user_attrs) or {}).get(CONFIRMED)
        search_best = best(r.trials)
        configs += [Config.from_sglang(exported)] if exported else []
        configs += [search_best[0]] if search_best else []
    return list(dict.fromkeys(configs))


def one_step(config: Config, space: Sequence[Config]) -> list[Config]:
    """config's neighbours one parameter away (tuner.samplers.neighbours' first moves) that the space holds."""
    members = set(space)
    block_ks = sorted({c.block_k for c in space})
    keys = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")
    keys += ("SPLIT_K", "SWAP_AB") if any(c.hopper for c in space) else ()
    own = config.params(keys)
    moved = [c for c in neighbours(config, block_ks, keys) if c in members]
    return [c for c in moved if sum(c.params(keys)[k] != own[k] for k in keys) == 1]


def plan(winners: Iterable[Config], space: Sequence[Config], *, neighbours: bool = True) -> list[Config]:
    """The winners, then (with neighbours) their one-step neighbours, once each (a neighbour too large for
    the device is recorded as such by the sweep, as in any landscape)."""
    winners = list(dict.fromkeys(winners))
    around = [n for c in winners for n in one_step(c, space)] if neighbours else []
    return list(dict.fromkeys([*winners, *around]))


def estimate(configs: Sequence[Config], batch_sizes: Sequence[int], cores: int) -> str:
    """The sweep's cost, in words, from the rates it assumes: it times each schedule once per M (configs
    that differ only in GROUP_SIZE_M launch one schedule where M fits in one row of tiles)."""
    timings = len({(M, c.schedule_key(M)) for M in batch_sizes for c in configs})
    timing_s = timings * TIMED_S
    compile_s = len(configs) * M_CLASSES * COMPILE_S / max(1, cores - 1)
    return (
        f"{timings} timings at ~{TIMED_S * 1e3:.0f} ms of wall each ({timing_s / 60:.1f} min) and "
        f"{len(configs) * M_CLASSES} compiles of ~{COMPILE_S} s over {max(1, cores - 1)} processes "
        f"({compile_s / 60:.1f} min, mostly while it times): at most about {(timing_s + compile_s) / 60:.0f} min"
    )


def _shape(problem: Problem) -> str:
    p = problem
    return f"{p.input_type} N={p.N} K={p.K} block [{p.block_n}, {p.block_k}] -> {p.out_dtype}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--storage", help="the Optuna storage URL of a finished tuning run of the shape")
    source.add_argument("--config-files", nargs="+", metavar="FILE", help="config files whose entries won")
    parser.add_argument("--N", type=int, required=True)
    parser.add_argument("--K", type=int, required=True)
    add_gemm_flags(parser)
    parser.add_argument("--space", choices=SPACES, default="base")
    parser.add_argument("--device", default=None, help="the device whose studies to read, where several tuned it")
    parser.add_argument("--max-m", type=int, default=4096, help="the largest M (default: %(default)s)")
    parser.add_argument("--no-neighbours", action="store_true", help="the winners alone (a tenth of the sweep)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="the GPU host's CPU cores, for the "
                        "estimate (default: this machine's, %(default)s)")  # fmt: skip
    parser.add_argument("--configs-out", required=True, help="the JSON list of SGLang entries to write")
    parser.add_argument("--landscape", required=True, help="the landscape the printed sweep command writes")
    args = parser.parse_args(argv)
    try:
        problem = Problem(N=args.N, K=args.K, M=1, **gemm_setup(args))
        space = search_space(args.block_k, args.space)
        if args.storage is not None:
            winners = winners_from_storage(args.storage, problem, args.space, args.device)
        else:
            winners = [c for path in args.config_files for c in read_config_file(path).values()]
        configs = plan(winners, space, neighbours=not args.no_neighbours)
        batch_sizes = dense_batch_sizes(args.max_m)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.configs_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([c.as_sglang() for c in configs], indent=1) + "\n")
    command = ["python", "-m", "tuner.sweep", "--N", args.N, "--K", args.K, "--input-type", args.input_type,
               "--out-dtype", args.out_dtype, "--block-n", args.block_n, "--block-k", args.block_k, "--space",
               args.space, "--configs", out, "--batch-sizes", *batch_sizes, "--out", args.landscape]  # fmt: skip
    small = [m for m in batch_sizes if m <= 64]
    print(f"{_shape(problem)}: {len(configs)} configs ({len(dict.fromkeys(winners))} that win at a tuned batch "
          f"size, the rest their one-step neighbours) at {len(batch_sizes)} M (every M from {small[0]} to "
          f"{small[-1]}, then {', '.join(map(str, batch_sizes[len(small):]))}), written to {out}")  # fmt: skip
    print(f"estimate: {estimate(configs, batch_sizes, args.cores)}")
    print(shlex.join(map(str, command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
