"""Fleets: Parquet export and ``load_many`` (Dask) over many real recordings must give the
answers pandas gives one recording at a time.

Four recordings of tests/targets/split.py are made with the real recorder; the fleet's forty
are those four written again (``spyanalyze.write``) as if from ten hosts, each a recording of
its own (host and start differ, so its id does).  (A Dask partition costs a few tens of
milliseconds of pandas whatever its size: forty show what a hundred would, in less time.)
"""

import copy
import os
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze import fleet
from spyanalyze.cli import main
from spyanalyze.export import parquet

from test_analyze_support import record_split

pytest.importorskip("pyarrow")
pytest.importorskip("dask.dataframe")
dask = pytest.importorskip("dask")

REAL = 4
FLEET = 40
HOSTS = 10


@pytest.fixture(scope="module")
def fleet_files(tmp_path_factory):
    """(paths of the FLEET .spy files, their Recordings loaded one by one)."""
    folder = tmp_path_factory.mktemp("fleet")
    real = [spyanalyze.load(record_split(folder, share, 0.6, 200)[0])
            for share in (0.75, 0.5, 0.25, 0.6)[:REAL]]
    paths = []
    for i in range(FLEET):
        clone = copy.copy(real[i % REAL])
        clone.header = dict(clone.header, host="host%02d" % (i % HOSTS),
                            start_wall_ns=clone.header["start_wall_ns"] + i)
        path = folder / ("run-%03d.spy" % i)
        with open(path, "wb") as out:
            spyanalyze.write(clone, out)
        paths.append(path)
    return paths, [spyanalyze.load(path) for path in paths]


def pandas_totals(recordings):
    """The sum over recordings of ``by_function()``, by fleet function label."""
    parts = []
    for rec in recordings:
        table = rec.by_function()
        table.index = fleet.function_labels(table["qualname"], table["module"])
        parts.append(table[fleet.TOTALS])
    summed = pd.concat(parts).groupby(level=0).sum()
    summed.index = pd.Index(summed.index.astype(object), name="function")
    return summed.sort_index()


def test_dask_per_function_totals_equal_the_sum_of_pandas_results(fleet_files):
    paths, recordings = fleet_files
    frame = spyanalyze.load_many(str(paths[0].parent / "run-*.spy"))
    assert frame.npartitions == FLEET
    totals = fleet.function_totals(frame)
    expected = pandas_totals(recordings)
    pd.testing.assert_frame_equal(totals.sort_index(), expected, check_dtype=False)
    assert totals["self_samples"].sum() == pytest.approx(
        sum(rec.samples["ticks"].sum() for rec in recordings), rel=0.01)
    # both in one pass over the files, which each compute() would read anew
    distinct, hosts = dask.compute(frame["recording"].nunique(), frame["host"].unique())
    assert distinct == FLEET
    assert sorted(hosts) == ["host%02d" % i for i in range(HOSTS)]


def test_a_dask_cluster_gives_the_same_totals(fleet_files):
    """Worker processes on a local cluster, which talk to the scheduler over TCP as a cluster of
    machines does: the same graph, the recordings read where the tasks run."""
    distributed = pytest.importorskip("distributed")
    paths, recordings = fleet_files
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  protocol="tcp", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        frame = spyanalyze.load_many([str(path) for path in paths[:20]])
        with distributed.get_task_stream(client) as stream:
            totals = fleet.function_totals(frame)
        workers = {task["worker"] for task in stream.data}
        pids = set(client.run(os.getpid).values())
    pd.testing.assert_frame_equal(totals.sort_index(), pandas_totals(recordings[:20]),
                                  check_dtype=False)
    assert len(workers) == 2 and all(worker.startswith("tcp://") for worker in workers)
    assert len(pids) == 2 and os.getpid() not in pids


def test_fleet_rows_of_one_recording_match_its_samples(fleet_files):
    rec = fleet_files[1][0]
    table = fleet.sample_table(rec)
    assert len(table) == len(rec)
    leaves = rec.leaves()
    assert table["qualname"].tolist() == leaves["qualname"].tolist()
    assert (table["wall"].to_numpy() == rec.samples["wall"].to_numpy()).all()
    assert all(f in fs for f, fs in zip(table["function"], table["functions"]) if f)


def test_parquet_dataset_round_trip_and_partitions(fleet_files, tmp_path):
    paths, recordings = fleet_files
    out = tmp_path / "dataset"
    for path in paths[:20]:
        result = CliRunner().invoke(main, ["export", str(path), "--format", "parquet", "-o", str(out)])
        assert result.exit_code == 0, result.output
    for table in parquet.TABLES:
        hosts = sorted(os.listdir(out / table))
        assert hosts == ["host=host%02d" % i for i in range(HOSTS)]
        pid = recordings[0].header["pid"]
        assert os.listdir(out / table / "host=host00" / ("pid=%d" % pid))
    frame = spyanalyze.load_many(str(out))
    pd.testing.assert_frame_equal(fleet.function_totals(frame).sort_index(),
                                  pandas_totals(recordings[:20]), check_dtype=False)
    one = frame[frame["recording"] == fleet.recording_id(recordings[0])].compute()
    mine = fleet.sample_table(recordings[0])
    assert one.sort_values("t")["function"].tolist() == mine["function"].tolist()
    assert one.sort_values("t")["timestamp"].tolist() == mine["timestamp"].tolist()


def test_parquet_export_never_overwrites(fleet_files, tmp_path):
    path = str(fleet_files[0][0])
    out = tmp_path / "dataset"
    runner = CliRunner()
    assert runner.invoke(main, ["export", path, "--format", "parquet", "-o", str(out)]).exit_code == 0
    again = runner.invoke(main, ["export", path, "--format", "parquet", "-o", str(out)])
    assert again.exit_code != 0 and "already holds this recording" in again.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    refused = runner.invoke(main, ["export", path, "--format", "parquet", "-o", str(mine)])
    assert refused.exit_code != 0 and "not empty" in refused.output
    assert os.listdir(mine) == ["notes.txt"]
    a_file = tmp_path / "file.parquet"
    a_file.write_text("keep")
    refused = runner.invoke(main, ["export", path, "--format", "parquet", "-o", str(a_file)])
    assert refused.exit_code != 0 and a_file.read_text() == "keep"


def test_load_many_bad_input_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import spyanalyze; spyanalyze.load_many(%r)"
                             % str(tmp_path / "none-*.spy")], capture_output=True, text=True)
    assert result.returncode != 0 and "no file matches" in result.stderr
    with pytest.raises(spyanalyze.errors.UnreadableFile):
        spyanalyze.load_many([str(tmp_path / "missing.spy")])


HIDE_PYARROW = "import sys; sys.modules['pyarrow'] = None; "


def test_without_pyarrow_import_works_and_use_says_what_to_install(fleet_files, tmp_path):
    path = str(fleet_files[0][0])
    result = subprocess.run([sys.executable, "-c", HIDE_PYARROW
                             + "import spyanalyze; spyanalyze.load(%r); print('ok')" % path],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    result = subprocess.run([sys.executable, "-c", HIDE_PYARROW + "from spyanalyze.cli import main; "
                             "main(['export', %r, '--format', 'parquet', '-o', %r])"
                             % (path, str(tmp_path / "out"))], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == \
        "spyanalyze: error: pyarrow is not installed: pip install 'spyrec[fleet]'"
    assert not (tmp_path / "out").exists()
    result = subprocess.run([sys.executable, "-c", HIDE_PYARROW + "import spyanalyze; "
                             "spyanalyze.load_many(%r)" % path], capture_output=True, text=True)
    assert "MissingDependency: pyarrow is not installed: pip install 'spyrec[fleet]'" in result.stderr
