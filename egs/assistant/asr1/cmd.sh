# cmd.sh: how parallel jobs run. `$cmd JOB=1:N log/x.JOB.log program args` (see sltk-queue --help).
# Local processes (default). Training resumes when rerun, so its log is appended to (--append-log).
export train_cmd="sltk-queue --backend local --append-log"
export decode_cmd="sltk-queue --backend local"
# On a Slurm cluster, e.g.:
# export train_cmd="sltk-queue --backend slurm --append-log --partition cpu --mem 8G --num-threads 2"
# export decode_cmd="sltk-queue --backend slurm --partition cpu --mem 4G"
