"""A real one-node Slurm cluster on this machine, for tests (Debian's slurm-wlm and munge, run as root).

``SlurmCluster(state_dir).start()`` installs the packages when they are missing (root only), starts
munged (unless one already answers), writes /etc/slurm/slurm.conf (the plugin's job step drops
SLURM_CONF, so the configuration must be at the default path; an existing file is put back
afterwards), starts slurmctld and slurmd in the foreground as children of the test process, and
waits until the node is idle. ``stop()`` cancels the cluster's jobs and ends only the daemons it
started. Accounting is off: status queries must use squeue, so MinJobAge keeps finished jobs
listed for ten minutes (the executor plugin asks for at least 3x its status interval).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
PACKAGES = ("slurm-wlm", "munge")
NODE = "localhost"
PARTITION = "debug"
MIN_JOB_AGE = 600


class SlurmUnavailable(Exception):
    """Slurm cannot run here (reason in the message); the test skips."""


def installed() -> bool:
    return all(shutil.which(tool) for tool in ("sbatch", "squeue", "sinfo", "slurmctld", "slurmd", "munged"))


def install() -> None:
    """apt-get install slurm-wlm and munge (non-interactive; the package lists are refreshed on failure)."""
    if installed():
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("Slurm (sbatch, slurmctld, slurmd, munged) is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("Slurm is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not installed():
        raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def node_layout() -> str:
    """The CPU and memory layout `slurmd -C` reports, for the NodeName line (without name and uptime)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0].split()
    return " ".join(field for field in first if not field.startswith(("NodeName=", "UpTime=")))


def running(name: str) -> bool:
    """Whether a process with this command name runs (read from /proc: pgrep may be missing)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                return True
        except OSError:
            continue
    return False


def munge_works() -> bool:
    if not shutil.which("munge"):
        return False
    credential = subprocess.run(["munge", "-n"], capture_output=True, text=True)
    if credential.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=credential.stdout, capture_output=True, text=True).returncode == 0


def wait_until(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


class SlurmCluster:
    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.processes: dict[str, subprocess.Popen] = {}
        self.conf_backup: Path | None = None
        self.conf_written = False

    # -- setup ---------------------------------------------------------------------------------

    def start(self) -> "SlurmCluster":
        if os.geteuid() != 0:
            why = "installed" if installed() else "not installed, and installing it needs root"
            raise SlurmUnavailable(
                f"Slurm is {why}; starting a cluster needs root too (it writes {SLURM_CONF} and slurmd runs jobs as root)"
            )
        install()
        for tool in ("slurmctld", "slurmd"):
            if running(tool):
                raise SlurmUnavailable(f"a {tool} is already running on this machine; the test needs its own cluster")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_munge()
            self._write_conf()
            self._start("slurmctld", ["slurmctld", "-D", "-c"])
            wait_until(self._controller_answers, 60, "slurmctld to answer", self.state_dir / "slurmctld.log")
            self._start("slurmd", ["slurmd", "-D", "-N", NODE])
            wait_until(self._node_idle, 90, "the node to be idle", self.state_dir / "slurmd.log")
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, name: str, command: list[str], **options) -> None:
        with open(self.state_dir / f"{name}.stdout", "w") as log:
            self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **options)

    def _start_munge(self) -> None:
        if munge_works():
            return  # a munged is already running (a CI image may start one): use it, leave it running
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
        for folder in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, "munge", "munge")
        Path("/run/munge").chmod(0o755)
        self._start("munged", ["munged", "--foreground", "--force"], user="munge", group="munge", extra_groups=[])
        wait_until(munge_works, 30, "munged to answer", Path("/var/log/munge/munged.log"))

    def _write_conf(self) -> None:
        state = self.state_dir
        for folder in ("state", "spool"):
            (state / folder).mkdir(exist_ok=True)
        lines = [
            "# written by the avemotion test suite (tests/slurm_cluster.py); removed when the test ends",
            "ClusterName=avemotion-test",
            f"SlurmctldHost={NODE}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            f"MinJobAge={MIN_JOB_AGE}",
            "DefMemPerCPU=1000",
            "KillWait=5",
            f"StateSaveLocation={state / 'state'}",
            f"SlurmdSpoolDir={state / 'spool'}",
            f"SlurmctldPidFile={state / 'slurmctld.pid'}",
            f"SlurmdPidFile={state / 'slurmd.pid'}",
            f"SlurmctldLogFile={state / 'slurmctld.log'}",
            f"SlurmdLogFile={state / 'slurmd.log'}",
            f"NodeName={NODE} NodeAddr=127.0.0.1 {node_layout()} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        ]
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF.exists():
            self.conf_backup = state / "slurm.conf.orig"
            shutil.copy2(SLURM_CONF, self.conf_backup)
        SLURM_CONF.write_text("\n".join(lines) + "\n")
        self.conf_written = True

    def _controller_answers(self) -> bool:
        self._check_alive()
        return subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("UP") > 0

    def _node_idle(self) -> bool:
        self._check_alive()
        state = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True).stdout.split()
        return state == ["idle"]

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = self.state_dir / f"{name}.log"
                text = log.read_text()[-3000:] if log.exists() else ""
                text += (self.state_dir / f"{name}.stdout").read_text()[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{text}")

    # -- queries -------------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge): id, name, state, CPUs,
        memory (e.g. 4000M) and comment."""
        fields = ("id", "name", "state", "cpus", "memory", "comment")
        out = subprocess.run(
            ["squeue", "-h", "--states=all", "-o", "%i|%j|%T|%C|%m|%k"], capture_output=True, text=True, check=True
        ).stdout
        return [dict(zip(fields, line.split("|", len(fields) - 1))) for line in out.splitlines() if line]

    # -- teardown ------------------------------------------------------------------------------

    def stop(self) -> None:
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--full", "--state=PENDING"], capture_output=True)
            subprocess.run(["scancel", "--full", "--state=RUNNING"], capture_output=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                active = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING"], capture_output=True, text=True)
                if active.returncode != 0 or not active.stdout.strip():
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        if self.conf_written:
            if self.conf_backup is not None:
                shutil.copy2(self.conf_backup, SLURM_CONF)
            else:
                SLURM_CONF.unlink(missing_ok=True)
            self.conf_written = False
