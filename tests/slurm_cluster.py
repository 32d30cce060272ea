"""A real one-node SLURM cluster for the tests (shared/docs/slurm-local.md): Debian's slurmctld,
slurmd and munge, all state and config in a private temp dir, free ports, and the daemons
stopped by their PIDs. Without the packages (or without root) the tests that use it skip, or
fail when ``CI`` is set: CI installs the packages (.ci/run), so a skip there would hide a bug."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = {"slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd", "munged": "/usr/sbin/munged"}
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol", "srun")
INSTALL = "apt-get install -y slurmctld slurmd slurm-client munge"


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [name for name, path in DAEMONS.items() if not Path(path).exists()]
    absent += [name for name in CLIENTS if shutil.which(name) is None]
    if absent:
        return f"no SLURM here ({', '.join(absent)} not found; `{INSTALL}` as root)"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (munged runs as the munge user, the daemons as root)"
    return None


def require_slurm() -> None:
    """Skip the calling test or fixture when SLURM is missing; fail instead under CI."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}: .ci/run installs the packages", pytrace=False)
    pytest.skip(reason)


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that nothing listens on right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]


def memory_mb() -> int:
    with open("/proc/meminfo") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return kb // 1024


@dataclass
class SlurmCluster:
    """A running cluster; ``env`` is what a process needs to use it (SLURM_CONF)."""

    root: Path
    conf: Path
    pid_files: dict[str, Path] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        proc = subprocess.run(
            args, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}\n{self.logs()}")
        return proc.stdout

    def signal_job(self, job_id: str, sig: str) -> None:
        """Send ``sig`` to the job's steps, as SLURM does on preemption or near the time limit."""
        self.run("scancel", job_id, "--signal", sig)

    def logs(self, chars: int = 3000) -> str:
        """The daemons' log tails, for failure messages."""
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            path = self.root / name
            if path.exists():
                out.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def pids(self) -> dict[str, int]:
        out = {}
        for name, path in self.pid_files.items():
            with contextlib.suppress(OSError, ValueError):
                out[name] = int(path.read_text().split()[0])
        return out


def _write_conf(root: Path, host: str, ctld_port: int, slurmd_port: int, munge_socket: Path) -> Path:
    conf = root / "slurm.conf"
    cpus = os.cpu_count() or 1
    conf.write_text(
        f"""\
ClusterName=local
SlurmctldHost={host}
SlurmUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
# Our own munged; cred_expire is also how long a requeued job waits before it may start
# again (default 120 s).
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
# Schedule every second, not every 30-60 s: a requeued job starts again as soon as it may.
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
JobAcctGatherType=jobacct_gather/none
NodeName={host} CPUs={cpus} RealMemory={min(8000, memory_mb() - 512)} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _start_munged(root: Path) -> tuple[Path, Path]:
    """Our own munged on a socket in ``root`` (not /run/munge: another cluster may use that)."""
    munge = root / "munge"
    munge.mkdir()
    shutil.chown(munge, "munge", "munge")
    munge.chmod(0o755)
    sock, pid = munge / "munge.socket", munge / "munged.pid"
    proc = subprocess.run(
        [
            "runuser",
            "-u",
            "munge",
            "--",
            DAEMONS["munged"],
            f"--socket={sock}",
            f"--pid-file={pid}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"munged did not start ({proc.returncode}): {proc.stderr.strip()}")
    return sock, pid


def _wait(what: str, ready, cluster: SlurmCluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local SLURM cluster: timed out waiting for {what}\n{cluster.logs()}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(cluster: SlurmCluster) -> None:
    """Cancel the cluster's jobs, then stop its daemons by their PIDs (never by name)."""
    pids = cluster.pids()
    if "slurmctld" in pids and _alive(pids["slurmctld"]):
        with contextlib.suppress(Exception):
            cluster.run("scancel", "--user", "root", check=False, timeout=10)  # this cluster's jobs only
            deadline = time.monotonic() + 15
            while cluster.run("squeue", "-h", check=False, timeout=10).strip() and time.monotonic() < deadline:
                time.sleep(0.2)
    alive = [pid for pid in pids.values() if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in alive) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start a one-node cluster (partition ``debug``), yield it, stop it and remove its files."""
    # Not under pytest's tmp dir: munged (the munge user) must reach its socket dir, and
    # pytest's base dir is private to root.
    root = Path(tempfile.mkdtemp(prefix="slurm-"))
    root.chmod(0o755)
    (root / "state").mkdir()
    (root / "spool").mkdir()
    cluster = SlurmCluster(root=root, conf=root / "slurm.conf")
    try:
        sock, munge_pid = _start_munged(root)
        cluster.pid_files["munged"] = munge_pid
        host = socket.gethostname().split(".")[0]
        ctld_port, slurmd_port = free_ports(2)
        _write_conf(root, host, ctld_port, slurmd_port, sock)
        cluster.pid_files["slurmctld"] = root / "slurmctld.pid"
        cluster.pid_files["slurmd"] = root / "slurmd.pid"
        env = {**os.environ, **cluster.env}
        subprocess.run([DAEMONS["slurmctld"], "-f", str(cluster.conf)], env=env, check=True, timeout=30)
        subprocess.run([DAEMONS["slurmd"], "-f", str(cluster.conf)], env=env, check=True, timeout=30)
        _wait(
            "the node to be idle",
            lambda: cluster.run("sinfo", "-h", "-o", "%T", check=False).strip() == "idle",
            cluster,
        )
        yield cluster
    finally:
        stop(cluster)
        shutil.rmtree(root, ignore_errors=True)
