"""egs/utils/parse_options.sh and egs/utils/lib.sh, exercised from small bash scripts."""

import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[2] / "egs" / "utils"

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
stage=0
stop_stage=100
nj=4
use_gpu=false
data_dir=
lm_weight=0.5   # a comment
help_message="Usage: $0 [options] <in> <out>"
. {utils}/parse_options.sh
later=1
echo "stage=$stage stop_stage=$stop_stage nj=$nj use_gpu=$use_gpu data_dir=$data_dir lm_weight=$lm_weight"
echo "args=$# [$*]"
"""


def run_script(tmp_path, *args, body=SCRIPT):
    script = tmp_path / "run.sh"
    script.write_text(body.format(utils=UTILS))
    return subprocess.run(["bash", str(script), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


def test_defaults_kept(tmp_path):
    r = run_script(tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "stage=0 stop_stage=100 nj=4 use_gpu=false data_dir= lm_weight=0.5", "args=0 []"]


def test_options_set_variables(tmp_path):
    r = run_script(tmp_path, "--stage", "3", "--stop-stage=5", "--nj", "", "--use-gpu", "true",
                   "--data-dir", "data/a b", "--lm-weight=x=y", "in", "--nj", "7")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "stage=3 stop_stage=5 nj= use_gpu=true data_dir=data/a b lm_weight=x=y"
    # parsing stops at the first positional argument; the rest stays in "$@"
    assert lines[1] == "args=3 [in --nj 7]"


def test_double_dash_ends_options(tmp_path):
    r = run_script(tmp_path, "--nj", "2", "--", "--stage", "x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "stage=0 stop_stage=100 nj=2 use_gpu=false data_dir= lm_weight=0.5", "args=2 [--stage x]"]


@pytest.mark.parametrize("args, message", [
    (["--foo-bar", "1"], "unknown option --foo-bar"),
    (["--later", "1"], "unknown option --later"),  # assigned after parse_options: no option
    (["--help-message=x"], "unknown option --help-message"),
    (["--bad.name", "1"], "unknown option --bad.name"),
    (["--nj"], "option --nj needs a value"),
    (["--use-gpu", "yes"], "option --use-gpu takes true or false, not 'yes'"),
])
def test_bad_options_exit_1(tmp_path, args, message):
    r = run_script(tmp_path, *args)
    assert r.returncode == 1
    assert message in r.stderr
    assert r.stdout == ""


def test_help_lists_options_with_defaults(tmp_path):
    for flag in ("--help", "-h"):
        r = run_script(tmp_path, "--nj", "9", flag)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert out.startswith("Usage: ") and "[options] <in> <out>" in out
        for opt, value in (("--stage", "0"), ("--stop-stage", "100"), ("--nj", "9"),
                           ("--use-gpu", "false"), ("--data-dir", ""), ("--lm-weight", "0.5")):
            line = next(ln for ln in out.splitlines() if ln.strip().startswith(opt + " "))
            assert line.rstrip().endswith(f"[{value}]"), line
        assert "--later" not in out and "--help-message" not in out


def test_sourced_from_a_function_free_snippet():
    # `bash -c` has no script file to list options from: help prints the message only.
    snippet = f'set -euo pipefail; nj=1; help_message="hi"; . {UTILS}/parse_options.sh; echo "nj=$nj $*"'
    r = subprocess.run(["bash", "-c", snippet, "x", "--nj", "3", "a"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "nj=3 a\n", r.stderr
    r = subprocess.run(["bash", "-c", snippet, "x", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "hi\n"


# ------------------------------------------------------------------ lib.sh


def bash(tmp_path, code):
    body = f"set -euo pipefail\n. {UTILS}/lib.sh\n{code}\n"
    return subprocess.run(["bash", "-c", body], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)


def test_stage_in(tmp_path):
    r = bash(tmp_path, """
stage=2; stop_stage=4
for n in 1 2 3 4 5; do if stage_in $n; then echo -n "$n "; fi; done; echo
unset stage stop_stage
if stage_in 7; then echo all-by-default; fi
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["2 3 4 ", "all-by-default"]
    r = bash(tmp_path, "stage=x; if stage_in 1; then echo yes; fi")
    assert r.returncode != 0 and "stage='x' is not a number" in r.stderr


def test_mark_done_and_stage_done(tmp_path):
    r = bash(tmp_path, """
if stage_done exp/a/train; then echo before; fi
mark_done exp/a/train
if stage_done exp/a/train; then echo after; fi
mark_done top
stage_done top && echo top
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["after", "top"]
    assert (tmp_path / "exp" / "a" / ".train.done").is_file()
    assert (tmp_path / ".top.done").is_file()
    assert not [p for p in (tmp_path / "exp" / "a").iterdir() if p.name.startswith(".tmp")]


def test_a_rerun_resumes(tmp_path):
    # Stage 2 fails the first time; the rerun skips stage 1 and redoes stage 2.
    code = """
stage=1; stop_stage=2
if stage_in 1 && ! stage_done exp/s1; then log "stage 1"; echo s1 >> ran; mark_done exp/s1; fi
if stage_in 2 && ! stage_done exp/s2; then
  log "stage 2"; echo s2 >> ran; [ -e ok ]; mark_done exp/s2
fi
"""
    assert bash(tmp_path, code).returncode != 0
    (tmp_path / "ok").touch()
    r = bash(tmp_path, code)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ran").read_text().split() == ["s1", "s2", "s2"]
    assert "stage 2" in r.stderr and "stage 1" not in r.stderr
    assert bash(tmp_path, code).returncode == 0
    assert (tmp_path / "ran").read_text().split() == ["s1", "s2", "s2"]


def test_log_and_die(tmp_path):
    script = tmp_path / "prep.sh"
    script.write_text(f'set -euo pipefail\n. {UTILS}/lib.sh\nlog "hello there"\ndie "no data"\necho never\n')
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    first, second = r.stderr.splitlines()
    assert first.endswith("[prep.sh:3] hello there")
    assert second.endswith("[prep.sh:4] error: no data")


@pytest.mark.parametrize("value,ok", [("3", True), ("12", True), ("0", False), ("-1", False),
                                      ("2.5", False), ("", False), ("x", False)])
def test_require_positive_int(tmp_path, value, ok):
    r = bash(tmp_path, f"num_utts=3; max_steps='{value}'\nrequire_positive_int num_utts max_steps\necho fine")
    if ok:
        assert r.returncode == 0 and r.stdout == "fine\n", r.stderr
    else:
        assert r.returncode == 1 and r.stdout == ""
        assert f"--max-steps must be a positive integer, not '{value}'" in r.stderr


def test_spawn_and_wait_all_count_real_failures_only(tmp_path):
    ok = bash(tmp_path, 'nj=2\njob() { sleep 0.05; return "$1"; }\n'
                       'for i in 1 2 3 4 5; do spawn job 0; done\nwait_all\necho "five ok"')
    assert ok.returncode == 0 and "five ok" in ok.stdout
    bad = bash(tmp_path, 'nj=2\njob() { sleep 0.05; return "$1"; }\ndying() { die "inside"; }\n'
                        'spawn job 0; spawn job 3; spawn dying; spawn job 0\nwait_all\necho never')
    assert bad.returncode != 0 and "2 job(s) failed" in bad.stderr and "never" not in bad.stdout
    # a job whose PID bash no longer knows (reused by another process) is not a failure: the
    # status comes from the job itself, not from `wait`
    forgot = bash(tmp_path, 'job() { sleep 0.05; }\nspawn job\nspawn job\n__lib_pids[0]=1\nwait_all\necho "no false failure"')
    assert forgot.returncode == 0 and "no false failure" in forgot.stdout
