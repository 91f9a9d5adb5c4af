"""sltk-queue: run a command as an array of jobs (``JOB=1:N log/x.JOB.log cmd ...``)."""

from __future__ import annotations

import logging
import shlex
from typing import List, Optional

import click

from sltk.utils.cli import program
from sltk.utils.queue import (Resources, Terminated, failure_report, parse_job_args, run_jobs,
                              slurm_output)

log = logging.getLogger("sltk")


class _ShellWords(click.ParamType):
    """Shell words given as one string (command line) or a list (yaml config)."""

    name = "OPTIONS"

    def convert(self, value, param, ctx) -> List[str]:
        if value is None:
            return []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        try:
            return shlex.split(str(value))
        except ValueError as e:
            self.fail(f"cannot split {value!r} into words: {e}", param, ctx)


@program(
    name="sltk-queue",
    examples=[
        "sltk-queue JOB=1:4 exp/log/fbank.JOB.log compute-features data/train/split4/JOB exp/fbank/JOB",
        "sltk-queue --backend slurm --partition cpu --mem 4G --num-threads 2 "
        "JOB=1:40 exp/log/decode.JOB.log decode --part JOB",
        "sltk-queue exp/log/count.log \"gunzip -c data/text.gz | wc -l > exp/count.txt\"",
    ],
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--backend", type=click.Choice(["local", "slurm"]), default="local",
              help="Run the jobs as local processes or as one Slurm job array.")
@click.option("--max-jobs-run", type=int, default=None,
              help="At most this many jobs at a time [local: number of CPUs; slurm: no limit].")
@click.option("--num-threads", type=int, default=1,
              help="Threads per job: OMP_NUM_THREADS and Slurm's --cpus-per-task.")
@click.option("--mem", default=None, help="Memory per job for Slurm, e.g. 4G (the local backend ignores it).")
@click.option("--gpu", type=int, default=0, help="GPUs per job for Slurm (--gres=gpu:N).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_limit", default=None, help="Slurm time limit per job, e.g. 4:00:00.")
@click.option("--job-name", default=None, help="Slurm job name [from the log file name].")
@click.option("--append-log/--no-append-log", default=False,
              help="Append to a log file that exists (a resumed training keeps its earlier runs' log) "
                   "instead of replacing it.")
@click.option("--sbatch-options", type=_ShellWords(), default=None,
              help="Further sbatch options, verbatim, e.g. \"--account=asr --qos=low\".")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[JOB=1:N] LOG COMMAND [ARGS]...")
def main(backend: str, max_jobs_run: Optional[int], num_threads: int, mem: Optional[str],
         gpu: int, partition: Optional[str], time_limit: Optional[str], job_name: Optional[str],
         append_log: bool, sbatch_options: List[str], args) -> int:
    """Run COMMAND once, or as jobs JOB=1:N with JOB replaced by the job index in LOG and in
    every argument. Each job's output goes to its own log file. Exits 1 when a job fails,
    naming the failed jobs and showing the end of the first failed log.

    COMMAND runs under bash -c: one quoted argument is a shell line (pipes, redirections);
    among several arguments, a shell operator on its own (\\|, '>', 2\\>\\&1) stays an
    operator and every other argument reaches the command as given."""
    jobs = parse_job_args(args)
    jobs.append_log = append_log
    resources = Resources(num_threads=num_threads, mem=mem, gpu=gpu, partition=partition,
                          time=time_limit, extra=list(sbatch_options or []))
    n = len(jobs.indices)
    log.info("running %d job%s on the %s backend: %s", n, "" if n == 1 else "s", backend,
             jobs.log_template)
    try:
        results = run_jobs(jobs, backend=backend, resources=resources,
                           max_jobs_run=max_jobs_run, job_name=job_name)
    except Terminated:
        click.echo("sltk-queue: terminated (SIGTERM); the running jobs were killed", err=True)
        return 143
    report = failure_report(results, slurm_out=slurm_output(jobs, job_name) if backend == "slurm" else None)
    if report:
        click.echo(report, err=True)
        return 1
    log.info("Done %d of %d jobs, 0 failed", n, n)
    return 0


if __name__ == "__main__":
    main()
