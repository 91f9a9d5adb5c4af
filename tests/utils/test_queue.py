"""sltk-queue and sltk.utils.queue: the ``JOB=1:N log/x.JOB.log cmd`` runner."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sltk.utils.errors import UserError
from sltk.utils.queue import JobArray, join_command, parse_job_args

ROOT = Path(__file__).resolve().parents[2]


def queue(tmp_path, *args, env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "sltk.bin.queue", *args], cwd=tmp_path,
                          env=e, capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------------ library


def test_parse_job_args():
    j = parse_job_args(["JOB=2:4", "log/x.JOB.log", "echo", "JOB"])
    assert (j.var, j.start, j.end, j.indices) == ("JOB", 2, 4, [2, 3, 4])
    assert j.log_path(3) == Path("log/x.3.log")
    assert j.command_line(3) == "echo 3"
    assert j.name == "x"
    one = parse_job_args(["log/x.log", "true"])
    assert (one.var, one.indices) == (None, [1])
    split = parse_job_args(["SPLIT=1:2", "log/SPLIT/x.log", "echo", "SPLIT"])
    assert split.common_dir == Path("log") and split.command_line(2) == "echo 2"


@pytest.mark.parametrize("args, words", [
    ([], "missing arguments"),
    (["JOB=1:4", "log/x.log", "true"], "does not contain JOB"),
    (["JOB=3:1", "log/x.JOB.log", "true"], "empty job range"),
    (["JOB=1-4", "log/x.JOB.log", "true"], "bad job range"),
    (["--bogus", "log/x.log", "true"], "unknown option --bogus"),
    (["log/x.log"], "missing arguments"),
])
def test_parse_job_args_errors(args, words):
    with pytest.raises(UserError, match=words):
        parse_job_args(args)


def test_join_command():
    assert join_command(["a | b > c"]) == "a | b > c"  # one argument: a shell line
    assert join_command(["echo", "a b", "|", "wc", "2>&1", ">", "o"]) == "echo 'a b' | wc 2>&1 > o"
    # anything else with shell characters reaches the program as given
    assert join_command(["printf", "%s|\\n", "ark:-|", "$x"]) == "printf '%s|\\n' 'ark:-|' '$x'"
    assert JobArray("l.JOB", ["echo", "x JOB"], "JOB", 1, 2).command_line(2) == "echo 'x 2'"


# ------------------------------------------------------------------ local backend


def test_local_runs_jobs_substitutes_and_logs(tmp_path):
    r = queue(tmp_path, "--num-threads", "3", "JOB=1:3", "log/x.JOB.log",
              "echo", "job JOB", "out/JOB", ";", "echo", "threads=$OMP_NUM_THREADS", ">&2")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "log" / "x.JOB.log").exists()
    for i in (1, 2, 3):
        lines = (tmp_path / "log" / f"x.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo 'job {i}' out/{i} ; echo 'threads=$OMP_NUM_THREADS' >&2"
        assert lines[1].startswith("# Started at ")
        # a quoted '$OMP_NUM_THREADS' stays literal; the environment still has it:
        assert lines[2:4] == [f"job {i} out/{i}", "threads=$OMP_NUM_THREADS"]
        assert lines[4].startswith("# Accounting: time=") and lines[4].endswith(" threads=3")
        assert lines[5].startswith("# Ended (code 0) at ")
    assert "Done 3 of 3 jobs" in r.stderr


def test_local_shell_line_and_env(tmp_path):
    r = queue(tmp_path, "--num-threads", "2", "JOB=1:2", "log/s.JOB.log",
              "seq JOB | wc -l > n.JOB.txt; echo omp=$OMP_NUM_THREADS")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "n.2.txt").read_text().strip() == "2"
    assert "omp=2" in (tmp_path / "log" / "s.1.log").read_text()


def test_local_single_job(tmp_path):
    r = queue(tmp_path, "exp/log/one.log", "echo", "JOB stays")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "exp" / "log" / "one.log").read_text()
    assert "JOB stays" in text and "# Ended (code 0)" in text


def test_local_append_log(tmp_path):
    # a rerun (a resumed training) replaces its log by default, appends with --append-log
    for word in ("first", "second"):
        assert queue(tmp_path, "log/r.log", "echo", word).returncode == 0
    assert "first" not in (tmp_path / "log" / "r.log").read_text()
    for word in ("third", "fourth"):
        assert queue(tmp_path, "--append-log", "log/r.log", "echo", word).returncode == 0
    lines = (tmp_path / "log" / "r.log").read_text().splitlines()
    assert [ln for ln in lines if not ln.startswith("#")] == ["second", "third", "fourth"]
    assert sum(ln.startswith("# Ended (code 0)") for ln in lines) == 3


def test_local_failures_are_reported(tmp_path):
    cmd = "echo start JOB; for i in $(seq 15); do echo line$i; done; [ JOB -eq 1 ] || exit 7"
    r = queue(tmp_path, "JOB=1:3", "log/f.JOB.log", cmd)
    assert r.returncode == 1
    err = r.stderr
    assert "sltk-queue: 2 of 3 jobs failed (jobs 2,3); see log/f.2.log" in err
    assert "# Ended (code 7)" in err and "line15" in err  # the tail of job 2's log
    assert "start 2" not in err  # only the last lines
    assert "# Ended (code 0)" in (tmp_path / "log" / "f.1.log").read_text()
    assert "# Ended (code 7)" in (tmp_path / "log" / "f.3.log").read_text()


def test_local_max_jobs_run(tmp_path):
    # Each job records when it started and ended; at most 2 may overlap.
    cmd = "date +%s.%N > t/JOB.start; sleep 0.3; date +%s.%N > t/JOB.end"
    (tmp_path / "t").mkdir()
    r = queue(tmp_path, "--max-jobs-run", "2", "JOB=1:5", "log/m.JOB.log", cmd)
    assert r.returncode == 0, r.stderr
    spans = [(float((tmp_path / "t" / f"{i}.start").read_text()),
              float((tmp_path / "t" / f"{i}.end").read_text())) for i in range(1, 6)]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2


def test_bad_options(tmp_path):
    r = queue(tmp_path, "--mem", "lots", "log/x.log", "true")
    assert r.returncode == 2 and "--mem" in r.stderr and "Traceback" not in r.stderr
    r = queue(tmp_path, "--bogus", "log/x.log", "true")
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    r = queue(tmp_path, "JOB=1:2", "log/x.log", "true")
    assert r.returncode == 2 and "does not contain JOB" in r.stderr
    (tmp_path / "q.yaml").write_text("partition: cpu\nqueue: long\n")
    r = queue(tmp_path, "--config", "q.yaml", "log/x.log", "true")
    assert r.returncode == 2 and "unknown key 'queue'" in r.stderr


def test_help():
    r = queue(ROOT, "--help")
    assert r.returncode == 0
    for word in ("--backend", "--max-jobs-run", "--num-threads", "--mem", "--gpu",
                 "--partition", "--config", "JOB=1:N", "Examples:"):
        assert word in r.stdout


# ------------------------------------------------------------------ Slurm backend

FAKE_SBATCH = r"""#!/usr/bin/env bash
# A stand-in for sbatch --wait --array=A-B[%K]: records its argv, runs each task here.
printf '%s\n' "$@" > "$(dirname "$0")/sbatch.argv"
array= script=
for a in "$@"; do
  case "$a" in --array=*) array=${a#--array=} ;; esac
  script=$a
done
array=${array%%\%*}
echo "Submitted batch job 4242"
rc=0
for ((i = ${array%-*}; i <= ${array#*-}; i++)); do
  [ "${FAKE_SBATCH_SKIP:-}" = "$i" ] && continue   # a task that never ran
  SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_JOB_ID=4242 bash "$script" || rc=1
done
exit $rc
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    return bindir, env


def test_slurm_submits_one_array_and_collects(tmp_path, fake_slurm):
    bindir, env = fake_slurm
    r = queue(tmp_path, "--backend", "slurm", "--partition", "cpu", "--mem", "4G",
              "--num-threads", "2", "--gpu", "1", "--max-jobs-run", "3",
              "--sbatch-options", "--account=asr --qos=low",
              "JOB=1:4", "exp/log/dec.JOB.log", "echo", "part JOB", "|", "tr", "a-z", "A-Z", env=env)
    assert r.returncode == 0, r.stderr
    argv = (bindir / "sbatch.argv").read_text().splitlines()
    assert argv[0] == "--wait"
    for a in ("--array=1-4%3", "--partition=cpu", "--mem=4G", "--cpus-per-task=2",
              "--gres=gpu:1", "--job-name=dec", "--account=asr", "--qos=low"):
        assert a in argv
    assert argv[-1] == "exp/log/q/dec.sh" and (tmp_path / argv[-1]).is_file()
    assert "--output=exp/log/q/dec-%a.out" in argv
    for i in range(1, 5):
        lines = (tmp_path / "exp" / "log" / f"dec.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo 'part {i}' | tr a-z A-Z"
        assert lines[1].startswith("# Started at ")
        assert f"PART {i}" in lines
        assert lines[-2].startswith("# Accounting: time=") and lines[-2].endswith(" threads=2")
        assert lines[-1].startswith("# Ended (code 0) at ")
        assert (tmp_path / "exp" / "log" / "q" / f"dec.{i}.status").read_text().strip() == "0"


def test_slurm_append_log(tmp_path, fake_slurm):
    _, env = fake_slurm
    for args in ([], [], ["--append-log"]):
        r = queue(tmp_path, "--backend", "slurm", *args, "JOB=1:2", "log/a.JOB.log", "echo", "run JOB", env=env)
        assert r.returncode == 0, r.stderr
    for i in (1, 2):
        lines = (tmp_path / "log" / f"a.{i}.log").read_text().splitlines()
        assert [ln for ln in lines if not ln.startswith("#")] == [f"run {i}", f"run {i}"]
        assert sum(ln.startswith("# Started at") for ln in lines) == 2


def test_slurm_failures_and_missing_status(tmp_path, fake_slurm):
    _, env = fake_slurm
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.yaml").write_text("backend: slurm\npartition: cpu\nmem: 2G\n")
    r = queue(tmp_path, "--config", "conf/slurm.yaml", "JOB=1:4", "log/t.JOB.log",
              "echo tail-of-JOB; [ JOB -ne 3 ]", env={**env, "FAKE_SBATCH_SKIP": "4"})
    assert r.returncode == 1
    assert "sltk-queue: 2 of 4 jobs failed (jobs 3,4); see log/t.3.log" in r.stderr
    assert "tail-of-3" in r.stderr and "# Ended (code 1)" in r.stderr
    argv = (tmp_path / "fakebin" / "sbatch.argv").read_text().splitlines()
    assert "--array=1-4" in argv and "--partition=cpu" in argv and "--mem=2G" in argv


def test_slurm_without_sbatch(tmp_path):
    if shutil.which("sbatch", path="/usr/bin:/bin"):
        pytest.skip("sbatch is installed here")
    r = queue(tmp_path, "--backend", "slurm", "log/x.log", "true", env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "sbatch is not on PATH" in r.stderr
