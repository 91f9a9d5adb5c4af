"""Run an array of shell jobs, Kaldi style: ``JOB=1:N log/x.JOB.log command args...``.

The contract (CONVENTIONS.md, "A recipe's contract") that recipes use through ``$cmd``:

* ``JOB=1:N`` (any ``NAME=start:end``) makes N jobs; the literal ``NAME`` in the log path
  and in every command argument is replaced by the job index. Without it there is one job
  and the first argument is its log file.
* The command is run by ``bash -c``. A single command argument is taken as a shell line
  (``"gunzip -c a.gz | wc -l > n.txt"``). Several arguments are joined with spaces; a shell
  operator given as its own argument (``\\|``, ``'>'``, ``2\\>\\&1``, ``\\;``) stays an
  operator, and every other argument reaches the command as given, quoted where needed
  (``"ark:copy-feats scp:a.scp ark:- |"`` stays one argument).
* Each job's stdout and stderr go to its log file, which reads::

      # <command line>
      # Started at <date>
      ...output...
      # Accounting: time=<seconds> threads=<T>
      # Ended (code <rc>) at <date>

* Jobs see ``OMP_NUM_THREADS=T``. The caller gets one :class:`JobResult` per job, and
  :func:`failure_report` turns the failures into one message naming them and showing the end
  of the first failed log.

Backends: :func:`run_local` (up to ``max_jobs_run`` processes at a time) and
:func:`run_slurm` (one ``sbatch --wait --array`` submission of a generated batch script).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from sltk.utils.errors import UserError

log = logging.getLogger("sltk")

DATE_FORMAT = "%a %b %d %H:%M:%S %Z %Y"  # the same in Python's strftime and date(1)
_RANGE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+):(\d+)$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)


@dataclass
class JobArray:
    """What to run: jobs ``start..end`` (inclusive), each with its log file and command.

    ``var`` is the placeholder (``JOB``) replaced by the job index, ``None`` for one job.
    """

    log_template: str
    command: List[str]
    var: Optional[str] = None
    start: int = 1
    end: int = 1
    append_log: bool = False  # append to an existing log (a resumed training) instead of replacing it

    @property
    def indices(self) -> List[int]:
        return list(range(self.start, self.end + 1))

    def _sub(self, text: str, index: int) -> str:
        return text.replace(self.var, str(index)) if self.var else text

    def log_path(self, index: int) -> Path:
        return Path(self._sub(self.log_template, index))

    def command_line(self, index: int) -> str:
        return self._sub(join_command(self.command), index)

    @property
    def name(self) -> str:
        """A short name from the log file (``log/fbank.JOB.log`` -> ``fbank``)."""
        base = Path(self.log_template).name
        if self.var:
            base = base.replace("." + self.var, "").replace(self.var, "")
        if base.endswith(".log"):
            base = base[: -len(".log")]
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._-")
        return base or "job"

    @property
    def common_dir(self) -> Path:
        """The deepest directory of the log template that holds no placeholder."""
        parent = Path(self.log_template).parent
        if self.var:
            while self.var in str(parent) and parent != parent.parent:
                parent = parent.parent
            if self.var in str(parent):
                parent = Path(".")
        return parent


@dataclass
class Resources:
    """What each job asks for. Only ``num_threads`` matters to the local backend."""

    num_threads: int = 1
    mem: Optional[str] = None  # e.g. "4G", per job
    gpu: int = 0
    partition: Optional[str] = None
    time: Optional[str] = None  # Slurm time limit, e.g. "4:00:00"
    extra: List[str] = field(default_factory=list)  # further sbatch options, verbatim

    def validate(self) -> None:
        if self.num_threads < 1:
            raise UserError(f"--num-threads must be at least 1, got {self.num_threads}")
        if self.gpu < 0:
            raise UserError(f"--gpu must be 0 or more, got {self.gpu}")
        if self.mem is not None and not _MEM_RE.match(str(self.mem)):
            raise UserError(f"--mem must look like 500M, 4G or 4096 (megabytes), got '{self.mem}'")


@dataclass
class JobResult:
    index: int
    log: Path
    returncode: Optional[int]  # None: the job never reported (killed, never started)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def parse_job_args(args: Sequence[str]) -> JobArray:
    """``[JOB=1:N] LOG COMMAND...`` -> :class:`JobArray`; :class:`UserError` when malformed."""
    args = list(args)
    if not args:
        raise UserError("missing arguments: [JOB=1:N] <log-file> <command> [<args>...]")
    first = args[0]
    if first.startswith("-"):
        raise UserError(f"unknown option {first} (options go before JOB=1:N and the log file)")
    m = _RANGE_RE.match(first)
    if m:
        var, start, end = m.group(1), int(m.group(2)), int(m.group(3))
        args = args[1:]
        if end < start:
            raise UserError(f"empty job range {first}: the end is before the start")
    elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", first) and len(args) > 1:
        raise UserError(f"bad job range '{first}': expected NAME=START:END, e.g. JOB=1:4")
    else:
        var, start, end = None, 1, 1
    if len(args) < 2:
        raise UserError("missing arguments: [JOB=1:N] <log-file> <command> [<args>...]")
    log_template, command = args[0], args[1:]
    if var and end > start and var not in log_template:
        raise UserError(
            f"log file {log_template} does not contain {var}: the {end - start + 1} jobs of "
            f"{first} would write the same log (use e.g. log/x.{var}.log)"
        )
    return JobArray(log_template=log_template, command=command, var=var, start=start, end=end)


# Arguments passed to bash untouched: plain words, and shell operators standing alone.
_PLAIN_RE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_OPERATOR_RE = re.compile(r"^(\||\|\||&&|;|&|&>|&>>|[0-9]*(>|>>|<|>\||<>|>&[0-9-]|<&[0-9-]))$")


def join_command(argv: Sequence[str]) -> str:
    """One shell line from command arguments (see the module doc).

    A single argument is used as it is: a shell line. Among several, a shell operator
    standing alone (``|``, ``>``, ``>>``, ``<``, ``2>&1``, ``>&2``, ``;``, ``&&``, ``||``) and
    a plain word are kept; any other argument is quoted, so the command receives it as given
    (``"ark:gunzip -c a.gz |"``, ``'%s\\n'``, ``"a b"``).
    """
    argv = list(argv)
    if len(argv) == 1:
        return argv[0]
    return " ".join(a if _PLAIN_RE.match(a) or _OPERATOR_RE.match(a) else shlex.quote(a)
                    for a in argv)


def _now() -> str:
    return time.strftime(DATE_FORMAT)


def _job_env(resources: Resources) -> Dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(resources.num_threads)
    return env


def default_max_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class _Running:
    def __init__(self, index: int, log_path: Path, proc: subprocess.Popen, logf, started: float):
        self.index, self.log_path, self.proc, self.logf, self.started = (
            index, log_path, proc, logf, started)


def _start_local(jobs: JobArray, index: int, env: Dict[str, str]) -> _Running:
    cmd = jobs.command_line(index)
    log_path = jobs.log_path(index)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "a" if jobs.append_log else "w", encoding="utf-8")
    logf.write(f"# {cmd}\n# Started at {_now()}\n")
    logf.flush()
    proc = subprocess.Popen(
        ["bash", "-c", cmd], stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
        env=env, start_new_session=True,
    )
    return _Running(index, log_path, proc, logf, time.time())


def _finish_local(run: _Running, rc: int, threads: int) -> JobResult:
    elapsed = int(round(time.time() - run.started))
    run.logf.write(f"# Accounting: time={elapsed} threads={threads}\n# Ended (code {rc}) at {_now()}\n")
    run.logf.close()
    return JobResult(run.index, run.log_path, rc)


def _kill_all(running: List[_Running]) -> None:
    for r in running:
        try:
            os.killpg(r.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.time() + 5
    for r in running:
        try:
            r.proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(r.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            r.proc.wait()
        r.logf.write(f"# Killed by sltk-queue at {_now()}\n")
        r.logf.close()


class Terminated(Exception):
    """sltk-queue got SIGTERM; the running jobs were terminated."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only)."""
    try:
        old = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signal handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_local(jobs: JobArray, resources: Optional[Resources] = None,
              max_jobs_run: Optional[int] = None) -> List[JobResult]:
    """Run the jobs as local processes, at most ``max_jobs_run`` (default: CPUs) at a time.

    On Ctrl-C or SIGTERM the running jobs (and their children) are terminated, and the
    exception is raised again.
    """
    resources = resources or Resources()
    limit = max_jobs_run or default_max_jobs()
    env = _job_env(resources)
    pending = jobs.indices
    running: List[_Running] = []
    results: Dict[int, JobResult] = {}
    with _sigterm_raises():
        try:
            _run_pending(jobs, pending, running, results, limit, env, resources.num_threads)
        except (KeyboardInterrupt, Terminated):
            _kill_all(running)
            raise
    return [results[i] for i in jobs.indices]


def _run_pending(jobs: JobArray, pending: List[int], running: List[_Running],
                 results: Dict[int, JobResult], limit: int, env: Dict[str, str],
                 threads: int) -> None:
    """Start jobs while fewer than ``limit`` run; collect them as they end (``running`` is
    updated in place so that the caller can kill what is left)."""
    while pending or running:
        while pending and len(running) < limit:
            running.append(_start_local(jobs, pending.pop(0), env))
        for r in list(running):
            rc = r.proc.poll()
            if rc is not None:
                running.remove(r)
                results[r.index] = _finish_local(r, rc, threads)
        if running and (len(running) >= limit or not pending):
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Slurm

def _batch_script(jobs: JobArray, resources: Resources, status_dir: Path, job_name: str) -> str:
    """A bash script that runs job $SLURM_ARRAY_TASK_ID, logs it, and writes its status."""
    q = shlex.quote
    # With one job there is nothing to substitute: a pattern that cannot occur.
    var = jobs.var or "__sltk_no_placeholder__"
    return f"""#!/usr/bin/env bash
# Written by sltk-queue: runs job $SLURM_ARRAY_TASK_ID of an array submitted with sbatch.
# The job's output goes to its log file; its exit code to a status file sltk-queue reads.
cd {q(os.getcwd())} || exit 1
job=${{SLURM_ARRAY_TASK_ID:?this script runs as a Slurm array job}}
cmd={q(join_command(jobs.command))}
log={q(jobs.log_template)}
cmd=${{cmd//{var}/$job}}
log=${{log//{var}/$job}}
status={q(str(status_dir))}/{q(job_name)}.$job.status
rm -f "$status"
mkdir -p "$(dirname "$log")" || exit 1
export OMP_NUM_THREADS={resources.num_threads}
{{
  printf '# %s\\n' "$cmd"
  printf '# Started at %s\\n' "$(date '+{DATE_FORMAT}')"
  printf '# Running on %s (Slurm job %s_%s)\\n' "${{HOSTNAME:-$(uname -n)}}" "${{SLURM_ARRAY_JOB_ID:-?}}" "$job"
}} {">>" if jobs.append_log else ">"}"$log"
start=$(date +%s)
bash -c "$cmd" </dev/null >>"$log" 2>&1
rc=$?
end=$(date +%s)
{{
  printf '# Accounting: time=%d threads=%d\\n' $((end - start)) {resources.num_threads}
  printf '# Ended (code %d) at %s\\n' "$rc" "$(date '+{DATE_FORMAT}')"
}} >>"$log"
echo "$rc" >"$status.tmp" && mv -f "$status.tmp" "$status"
exit "$rc"
"""


def slurm_dir(jobs: JobArray) -> Path:
    """Where the batch script, status files and Slurm output go: ``<log dir>/q``."""
    return jobs.common_dir / "q"


def slurm_output(jobs: JobArray, job_name: Optional[str] = None) -> Path:
    """Slurm's own output file of each array task (``%a``: the index)."""
    return slurm_dir(jobs) / f"{job_name or jobs.name}-%a.out"


def sbatch_command(jobs: JobArray, resources: Resources, script: Path, job_name: str,
                   max_jobs_run: Optional[int] = None, sbatch: str = "sbatch") -> List[str]:
    """The one ``sbatch --wait --array=...`` command line that submits the whole array."""
    array = f"{jobs.start}-{jobs.end}" + (f"%{max_jobs_run}" if max_jobs_run else "")
    out = slurm_output(jobs, job_name)
    cmd = [sbatch, "--wait", f"--array={array}", f"--job-name={job_name}", f"--output={out}"]
    if resources.partition:
        cmd.append(f"--partition={resources.partition}")
    if resources.mem:
        cmd.append(f"--mem={str(resources.mem).upper()}")
    cmd.append(f"--cpus-per-task={resources.num_threads}")
    if resources.gpu:
        cmd.append(f"--gres=gpu:{resources.gpu}")
    if resources.time:
        cmd.append(f"--time={resources.time}")
    cmd.extend(resources.extra)
    cmd.append(str(script))
    return cmd


def run_slurm(jobs: JobArray, resources: Optional[Resources] = None,
              max_jobs_run: Optional[int] = None, job_name: Optional[str] = None,
              sbatch: str = "sbatch") -> List[JobResult]:
    """Submit the jobs as one Slurm array with ``sbatch --wait`` and collect their status.

    The batch script, the status files and Slurm's own output files live in
    ``<log dir>/q/``. A job without a status file (killed, out of time, never started)
    counts as failed.
    """
    resources = resources or Resources()
    job_name = job_name or jobs.name
    if shutil.which(sbatch) is None:
        raise UserError(f"{sbatch} is not on PATH: Slurm is not available here (use --backend local)")
    qdir = slurm_dir(jobs)
    qdir.mkdir(parents=True, exist_ok=True)
    for i in jobs.indices:
        jobs.log_path(i).parent.mkdir(parents=True, exist_ok=True)
    status = {i: qdir / f"{job_name}.{i}.status" for i in jobs.indices}
    out = slurm_output(jobs, job_name)
    for i in jobs.indices:  # a previous run's files must not pass for this one's
        for stale in (status[i], Path(str(out).replace("%a", str(i)))) + (() if jobs.append_log else (jobs.log_path(i),)):
            stale.unlink(missing_ok=True)
    script = qdir / f"{job_name}.sh"
    script.write_text(_batch_script(jobs, resources, qdir, job_name), encoding="utf-8")
    script.chmod(0o755)
    cmd = sbatch_command(jobs, resources, script, job_name, max_jobs_run, sbatch)
    log.info("submitting: %s", " ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    slurm_id = None
    with _sigterm_raises():
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                m = re.search(r"Submitted batch job (\d+)", line)
                if m and slurm_id is None:
                    slurm_id = m.group(1)
                sys.stderr.write(line)
            rc = proc.wait()
        except (KeyboardInterrupt, Terminated):
            if slurm_id and shutil.which("scancel"):
                log.info("cancelling Slurm job %s", slurm_id)
                subprocess.run(["scancel", slurm_id], check=False)
            proc.terminate()
            raise
    if slurm_id is None and rc != 0:
        raise UserError(f"sbatch failed (exit code {rc}) before submitting; command: "
                        + " ".join(shlex.quote(c) for c in cmd))
    results = []
    for i in jobs.indices:
        code: Optional[int] = None
        try:
            code = int(status[i].read_text().strip())
        except (OSError, ValueError):
            pass
        results.append(JobResult(i, jobs.log_path(i), code))
    return results


# ---------------------------------------------------------------------------------------

def tail(path: Path, n: int = 10) -> List[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()[-n:]
    except OSError:
        return []


def failure_report(results: Sequence[JobResult], slurm_out: Optional[Path] = None,
                   tail_lines: int = 10, prog: str = "sltk-queue") -> Optional[str]:
    """``None`` when all jobs succeeded, else the message that names the failed jobs.

    ``slurm_out``: a Slurm output file whose tail is shown when the first failed job left no
    log (``%a`` in it stands for the job index).
    """
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    shown = ",".join(str(r.index) for r in failed[:20]) + (",..." if len(failed) > 20 else "")
    first = failed[0]
    msg = (f"{prog}: {len(failed)} of {len(results)} jobs failed (jobs {shown}); "
           f"see {first.log}")
    lines = tail(first.log, tail_lines)
    where = first.log
    if not lines and slurm_out is not None:
        where = Path(str(slurm_out).replace("%a", str(first.index)))
        lines = tail(where, tail_lines)
    if first.returncode is None:
        msg += "\n(the job reported no exit code: killed, out of time or memory, or never started)"
    if lines:
        msg += f"\n--- last lines of {where} ---\n" + "\n".join(lines)
    else:
        msg += f"\n({where} is empty or missing)"
    return msg


def run_jobs(jobs: JobArray, backend: str = "local", resources: Optional[Resources] = None,
             max_jobs_run: Optional[int] = None, job_name: Optional[str] = None) -> List[JobResult]:
    """Run ``jobs`` on ``backend`` (``local`` or ``slurm``); one result per job, in order."""
    resources = resources or Resources()
    resources.validate()
    if max_jobs_run is not None and max_jobs_run < 1:
        raise UserError(f"--max-jobs-run must be at least 1, got {max_jobs_run}")
    if backend == "local":
        return run_local(jobs, resources, max_jobs_run)
    if backend == "slurm":
        return run_slurm(jobs, resources, max_jobs_run, job_name)
    raise UserError(f"unknown backend '{backend}' (local or slurm)")
