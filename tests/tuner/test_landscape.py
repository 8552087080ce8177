"""Landscape CSVs (docs/contracts.md): writing, strict reading, gzip, and replaying them as a Benchmarker."""

from __future__ import annotations

import gzip
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tuner.benchmarkers import HEADER, LandscapeWriter, Measurement, ReplayBenchmarker, Row, read_rows
from tuner.space import GROUP_SIZE_M, Config, Problem, search_space

REPO = Path(__file__).resolve().parents[2]

DEVICE = "NVIDIA_H100_80GB_HBM3"
PROBLEM = Problem(N=576, K=7168, M=13, out_dtype="bfloat16")
FAST = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)
HUGE = Config(block_m=256, block_n=256, block_k=128, group_m=64, num_warps=8, num_stages=5)
ABSENT = Config(block_m=32, block_n=32, block_k=64, group_m=1, num_warps=4, num_stages=2)

HEADER_LINE = ",".join(HEADER)
# A valid row to start from; cases below break one field of it.
GOOD_LINE = f"{DEVICE},fp8,bfloat16,576,7168,13,128,128,16,64,128,1,4,4,ok,10.250"


def test_header_is_spec_exact():
    assert HEADER_LINE == (
        "device,input_type,out_dtype,N,K,M,block_n,block_k,"
        "BLOCK_SIZE_M,BLOCK_SIZE_N,BLOCK_SIZE_K,GROUP_SIZE_M,num_warps,num_stages,status,us"
    )


@pytest.mark.parametrize("name", ["land.csv", "land.csv.gz"])  # plain, and gzip written by the writer
def test_writer_round_trip(tmp_path, name):
    path = tmp_path / name
    with LandscapeWriter(path) as writer:
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.2504))
        writer.write(DEVICE, PROBLEM, HUGE, Measurement("out_of_resources", reason="shared memory"))
    with LandscapeWriter(path) as writer:  # reopening appends, without a second header
        writer.write(DEVICE, Problem(N=576, K=7168, M=1), ABSENT, Measurement("timeout", reason="hung"))
    assert list(read_rows(path)) == [
        Row(DEVICE, PROBLEM, FAST, "ok", 10.25),  # written with 3 decimals
        Row(DEVICE, PROBLEM, HUGE, "out_of_resources", None),
        Row(DEVICE, Problem(N=576, K=7168, M=1), ABSENT, "timeout", None),
    ]


def test_written_text_is_spec_csv(tmp_path):
    path = tmp_path / "land.csv"
    with LandscapeWriter(path) as writer:
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.25))
        writer.write(DEVICE, PROBLEM, HUGE, Measurement("compile_error", reason="ptxas"))
    assert path.read_text() == (
        f"{HEADER_LINE}\n{GOOD_LINE}\n{DEVICE},fp8,bfloat16,576,7168,13,128,128,256,256,128,64,8,5,compile_error,\n"
    )


def test_gzip_file_reads_like_plain(tmp_path):
    text = f"{HEADER_LINE}\n{GOOD_LINE}\n"
    (tmp_path / "land.csv").write_text(text)
    with gzip.open(tmp_path / "land.csv.gz", "wt") as f:
        f.write(text)
    rows = list(read_rows(tmp_path / "land.csv.gz"))
    assert rows == list(read_rows(tmp_path / "land.csv")) == [Row(DEVICE, PROBLEM, FAST, "ok", 10.25)]


@pytest.mark.parametrize(
    "header",
    [
        "device,N,K,M,status,us",  # another tool's CSV
        HEADER_LINE.replace("out_dtype,", ""),  # one column short
        HEADER_LINE.replace("device", "gpu"),  # a renamed column
        "",  # an empty file
    ],
)
def test_wrong_header_raises(tmp_path, header):
    path = tmp_path / "land.csv"
    path.write_text(f"{header}\n" if header else "")
    with pytest.raises(ValueError, match="header"):
        list(read_rows(path))


def test_writer_refuses_to_append_to_another_header(tmp_path):
    path = tmp_path / "land.csv"
    path.write_text("device,N,K\n")
    with pytest.raises(ValueError, match="header"):
        LandscapeWriter(path)
    assert path.read_text() == "device,N,K\n"


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        (GOOD_LINE.replace(",ok,", ",bogus,"), "status"),  # a status outside the six
        (GOOD_LINE.replace(",ok,", ",pruned,"), "status"),  # pruned is a tuner state, not a landscape status
        (GOOD_LINE.replace(",ok,10.250", ",crash,10.250"), "us"),  # a latency on a failed row
        (GOOD_LINE.replace(",10.250", ","), "us"),  # an ok row without a latency
        (GOOD_LINE + ",extra", "fields"),  # one field too many
        (GOOD_LINE.replace(",576,", ",five,"), "five"),  # N not an int
        (GOOD_LINE.replace(",fp8,", ",fp16,"), "input type"),  # an unknown input type
        (GOOD_LINE.replace(",16,64,", ",0,64,"), "BLOCK_SIZE_M"),  # an impossible config
        (GOOD_LINE.replace(",10.250", ",-375.400"), "positive latency"),  # was accepted, and exported
        (GOOD_LINE.replace(",10.250", ",0.000"), "positive latency"),
        (GOOD_LINE.replace(",10.250", ",nan"), "positive latency"),
    ],
)
def test_bad_row_raises_naming_its_line(tmp_path, line, complaint):
    path = tmp_path / "land.csv"
    path.write_text(f"{HEADER_LINE}\n{GOOD_LINE}\n{line}\n")
    with pytest.raises(ValueError, match=f"land.csv:3: .*{complaint}"):
        list(read_rows(path))


def test_missing_file_raises(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ReplayBenchmarker.from_file(tmp_path / "nothing.csv")


def test_a_folder_is_called_a_folder(tmp_path):
    with pytest.raises(ValueError, match=r"^landscape file '.*' is a folder; give a landscape CSV file"):
        ReplayBenchmarker.from_file(tmp_path)  # said "does not exist"


def test_a_row_repeated_with_another_result_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "land.csv"
    path.write_text(f"{HEADER_LINE}\n{GOOD_LINE}\n{GOOD_LINE}\n{GOOD_LINE.replace(',10.250', ',11.000')}\n")
    with pytest.raises(ValueError, match=r"land.csv:4: the same config at the same problem as line 2 with another "
                                         r"result \(ok 11.0 against ok 10.25\)"):  # fmt: skip
        list(read_rows(path))
    path.write_text(f"{HEADER_LINE}\n{GOOD_LINE}\n{GOOD_LINE}\n")  # the same result twice: read once
    assert len(list(read_rows(path))) == 1


@pytest.fixture
def replay(tmp_path):
    path = tmp_path / "land.csv"
    with LandscapeWriter(path) as writer:
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.0))
        writer.write(DEVICE, PROBLEM, HUGE, Measurement("out_of_resources", reason="shared memory"))
    return ReplayBenchmarker.from_file(path)


@pytest.mark.parametrize(
    ("config", "prune_above_us", "status", "us"),
    [
        (FAST, None, "ok", 10.0),  # an ok row gives its latency
        (FAST, 20.0, "ok", 10.0),  # under the prune threshold
        (FAST, 5.0, "pruned", 10.0),  # over the threshold: pruned, carrying the estimate
        (HUGE, None, "out_of_resources", None),  # a failed row keeps its recorded status
        (HUGE, 5.0, "out_of_resources", None),  # a failure is not a prune
        (ABSENT, None, "crash", None),  # no row: a failed config, never ok (and no study proposes it)
    ],
)
def test_replay_measure(replay, config, prune_above_us, status, us):
    result = replay.measure(PROBLEM, config, prune_above_us=prune_above_us)
    assert (result.status, result.us) == (status, us)


def test_replay_can_measure_what_it_recorded_and_configs_of_the_same_schedule(replay):
    # M = 13 fits in one row of tiles of either recorded config: every GROUP_SIZE_M launches the same
    # schedule, so each counts as recorded and replays the row, as a sweep would have written it.
    assert replay.measurable(PROBLEM) == {replace(c, group_m=g) for c in (FAST, HUGE) for g in GROUP_SIZE_M}
    assert replay.measure(PROBLEM, replace(FAST, group_m=32)) == Measurement("ok", us=10.0)
    assert replay.latency(PROBLEM, replace(FAST, group_m=64)) == 10.0
    assert replay.measurable(PROBLEM.at(1)) == frozenset()  # no rows at all for this M


def test_with_several_rows_of_tiles_only_the_recorded_group_size_replays():
    problem = PROBLEM.at(64)  # four rows of 16-row tiles: GROUP_SIZE_M reorders them
    bench = ReplayBenchmarker([Row(DEVICE, problem, FAST, "ok", 12.0)])
    assert bench.measurable(problem) == {FAST}
    assert bench.measure(problem, replace(FAST, group_m=16)).status == "crash"


def test_a_hopper_landscape_replays_and_its_base_rows_hash_as_without_the_columns(tmp_path):
    split = replace(FAST, split_k=8, swap_ab=True)
    with LandscapeWriter(tmp_path / "hopper.csv", hopper=True) as writer:
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.0))
        writer.write(DEVICE, PROBLEM, split, Measurement("ok", us=4.0))
    bench = ReplayBenchmarker.from_file(tmp_path / "hopper.csv")
    assert bench.measure(PROBLEM, split) == Measurement("ok", us=4.0)
    assert bench.optimum(PROBLEM) == (split, 4.0)
    assert bench.optimum(PROBLEM, among=[FAST, replace(FAST, split_k=2)]) == (FAST, 10.0)  # what has a row
    # The same base rows with or without the two columns are the same landscape to a study's name.
    with LandscapeWriter(tmp_path / "hopper_base.csv", hopper=True) as writer:
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.0))
    with LandscapeWriter(tmp_path / "base.csv") as writer:
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.0))
    software = [ReplayBenchmarker.from_file(tmp_path / name).software for name in ("hopper_base.csv", "base.csv")]
    assert software[0] == software[1]


def test_a_dense_landscape_replays_every_recorded_m_and_its_keys_are_required_like_any():
    # M recorded between the tuned batch sizes are what a coverage check probes: replay times them all.
    rows = [Row(DEVICE, PROBLEM.at(M), FAST, "ok", 10.0 + M) for M in (1, 2, 3, 16, 37)]
    rows.append(Row(DEVICE, PROBLEM.at(37), HUGE, "out_of_resources", None))
    rows.append(Row(DEVICE, replace(PROBLEM, N=7168).at(5), FAST, "ok", 1.0))  # another shape's M is not this one's
    bench = ReplayBenchmarker(rows)
    assert bench.batch_sizes(PROBLEM) == bench.batch_sizes(PROBLEM.at(16)) == {1, 2, 3, 16, 37}
    assert bench.batch_sizes(replace(PROBLEM, out_dtype="float16")) == frozenset()
    for M in (1, 16):
        bench.require(PROBLEM.at(M))  # a run tuning the keys alone accepts the superset
    assert {FAST, HUGE} <= bench.measurable(PROBLEM.at(37)) and ABSENT not in bench.measurable(PROBLEM.at(37))
    probed = bench.probe(PROBLEM.at(37), [FAST, HUGE, ABSENT], rounds=3, quick=True)
    assert probed[FAST] == [47.0] * 3
    assert (probed[HUGE].status, probed[ABSENT].status) == ("out_of_resources", "crash")


def test_replay_reads_device_name_from_the_device_column(replay):
    assert replay.device_name == DEVICE
    assert replay.kind == "replay"


def test_replay_with_two_devices_raises():
    rows = [Row("GPU_A", PROBLEM, FAST, "ok", 1.0), Row("GPU_B", PROBLEM, FAST, "ok", 1.0)]
    with pytest.raises(ValueError, match="one device"):
        ReplayBenchmarker(rows)


@pytest.mark.parametrize(
    "problem",
    [
        Problem(N=576, K=7168, M=14, out_dtype="bfloat16"),  # another batch size
        Problem(N=576, K=7168, M=13),  # another output dtype
        Problem(N=576, K=7168, M=13, input_type="int8", out_dtype="bfloat16"),  # another input type
        Problem(N=7168, K=576, M=13, out_dtype="bfloat16"),  # N and K swapped
    ],
)
def test_require_raises_for_an_absent_problem(replay, problem):
    replay.require(PROBLEM)  # present: no error
    with pytest.raises(ValueError, match=f"N={problem.N} K={problem.K} M={problem.M}"):
        replay.require(problem)


# Writes five rows into a gzip landscape and dies without closing it, as a sweep killed mid-run.
_KILLED_WRITER = """
import os, sys
from tuner.benchmarkers import LandscapeWriter, Measurement
from tuner.space import Problem, search_space
writer = LandscapeWriter(sys.argv[1])
for config in search_space(128)[:5]:
    writer.write("NVIDIA_H100_80GB_HBM3", Problem(N=576, K=7168, M=13), config, Measurement("ok", us=10.0))
os._exit(1)
"""


def _killed_after_five_rows(path: Path) -> list[Row]:
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], cwd=REPO, check=False, timeout=120)
    return [Row(DEVICE, Problem(N=576, K=7168, M=13), c, "ok", 10.0) for c in search_space(128)[:5]]


def test_a_gzip_landscape_cut_by_a_crash_keeps_every_written_row_and_takes_more(tmp_path, capsys):
    path = tmp_path / "land.csv.gz"
    written = _killed_after_five_rows(path)
    with pytest.raises(EOFError):  # what gzip itself makes of it
        gzip.decompress(path.read_bytes())
    capsys.readouterr()
    assert list(read_rows(path)) == written
    assert capsys.readouterr().err == (  # it used to be read silently
        f"warning: {path} was cut short (a sweep that stopped mid-write?): read its 5 complete rows; "
        "the rest is lost.\n"
    )
    with LandscapeWriter(path) as writer:  # a resumed sweep appends after the rows that survived
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.25))
    assert list(read_rows(path)) == [*written, Row(DEVICE, PROBLEM, FAST, "ok", 10.25)]
    assert capsys.readouterr().err == ""  # whole again
    assert gzip.decompress(path.read_bytes()).decode().count("\n") == 7  # whole again: header and 6 rows


def test_a_gzip_landscape_cut_at_any_byte_reads_as_a_prefix_of_its_rows(tmp_path):
    # Wherever a crash stops the bytes, the reader returns whole rows only (never a latency cut to
    # fewer digits), in order; a cut before the header line is complete leaves no header.
    full = tmp_path / "land.csv.gz"
    written = _killed_after_five_rows(full)
    data = full.read_bytes()
    cut = tmp_path / "cut.csv.gz"
    counts = []
    for size in range(len(data) + 1):
        cut.write_bytes(data[:size])
        try:
            rows = list(read_rows(cut))
        except ValueError as error:
            assert "header" in str(error)
            assert not counts or counts[-1] == -1, f"the header vanished at {size} bytes"
            counts.append(-1)
            continue
        assert rows == written[: len(rows)]
        counts.append(len(rows))
    assert counts[-1] == 5 and counts == sorted(counts)


def test_a_gzip_landscape_cut_before_its_header_is_started_afresh(tmp_path):
    path = tmp_path / "land.csv.gz"
    with LandscapeWriter(path) as writer:
        writer.write(DEVICE, PROBLEM, FAST, Measurement("ok", us=10.25))
    path.write_bytes(path.read_bytes()[:12])  # the gzip header and a few bytes: not one line
    with LandscapeWriter(path) as writer:
        writer.write(DEVICE, PROBLEM, HUGE, Measurement("compile_error", reason="ptxas"))
    assert list(read_rows(path)) == [Row(DEVICE, PROBLEM, HUGE, "compile_error", None)]


def test_a_file_that_is_not_gzip_is_reported(tmp_path):
    path = tmp_path / "land.csv.gz"
    path.write_text(f"{HEADER_LINE}\n{GOOD_LINE}\n")
    with pytest.raises(ValueError, match="not a valid gzip file"):
        list(read_rows(path))
