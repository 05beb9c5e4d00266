"""A real single-node Slurm cluster for the tests, started and stopped by the test itself.

``munged`` (its own key and socket), ``slurmctld`` and ``slurmd`` run on localhost with a generated
``slurm.conf``; every file (key, state, spool, pid files, logs) lives in one temporary folder and the ports
are free ones picked at start, so nothing under /etc or /run is touched and a second cluster can run beside
it. Needs root and Debian's ``slurm-wlm`` and ``munge`` packages (``scripts/setup.sh`` installs them).

Without an accounting daemon ``sacct`` does not work (job state UNKNOWN in submitit); the executor under
test reads job states with ``squeue`` instead. ``KillWait=2`` makes ``scancel`` kill a job that ignores
SIGTERM (submitit's job wrapper does) within seconds instead of the default 30 s.

Usage::

    cluster = Cluster.start(Path(tempfile.mkdtemp()))
    ... os.environ["SLURM_CONF"] = str(cluster.conf); sbatch ...
    cluster.stop()

The daemons are stopped by the pids they wrote to their pid files at start, never by name.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "srun", "scontrol")
DAEMONS = ("munged", "slurmctld", "slurmd")


def skip_reason() -> str | None:
    """Why a real cluster cannot be started here (None when it can)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    missing = [b for b in BINARIES if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]
    if missing:
        return (f"Slurm/munge not installed ({', '.join(missing)} missing): "
                f"apt-get install slurm-wlm munge (scripts/setup.sh does)")
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install -r requirements.lock)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or name


def _mem_mb() -> int:
    """90 % of the machine's memory (a node declaring more than it has is drained)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 1024


def slurm_conf(folder: Path, host: str, cpus: int, mem_mb: int, ports: tuple[int, int]) -> str:
    """The text of a one-node, one-partition (``debug``) slurm.conf keeping all state under ``folder``."""
    return "\n".join([
        "ClusterName=eoslibtest",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'munge.socket'}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/builtin",
        "ReturnToService=2",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "KillWait=2",
        "MinJobAge=600",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


@dataclass
class Cluster:
    """A running single-node cluster: ``conf`` (point ``SLURM_CONF`` at it), its folder and daemon pids."""

    folder: Path
    conf: Path
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    @classmethod
    def start(cls, folder: Path, timeout: float = 60.0) -> "Cluster":
        """munged, slurmctld and slurmd with all state in ``folder``; returns once ``sinfo`` shows the node
        idle (raises with the daemons' log tails when it does not within ``timeout`` seconds)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)  # munged requires its socket's folder to be reachable by everyone
        for sub in ("state", "spool"):
            (folder / sub).mkdir(exist_ok=True)
        keydir = folder / "munge"
        keydir.mkdir(mode=0o700, exist_ok=True)
        key = keydir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        host = socket.gethostname().split(".")[0]
        conf = folder / "slurm.conf"
        conf.write_text(slurm_conf(folder, host, os.cpu_count() or 1, _mem_mb(), (_free_port(), _free_port())))
        c = cls(folder, conf)
        try:
            c._daemon("munged", [_sbin("munged"), f"--key-file={key}", f"--socket={folder / 'munge.socket'}",
                                 f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                                 f"--seed-file={keydir / 'munged.seed'}"])
            c._daemon("slurmctld", [_sbin("slurmctld"), "-f", str(conf)])
            c._daemon("slurmd", [_sbin("slurmd"), "-f", str(conf), "-N", host])
            c._wait_idle(timeout)
        except BaseException:
            c.stop()
            raise
        return c

    def _daemon(self, name: str, cmd: list[str]) -> None:
        """Start a self-daemonising daemon and record the pid it writes to ``<folder>/<name>.pid``."""
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{name} failed to start ({r.returncode}): {r.stderr.strip()}\n{self.logs()}")
        pidfile = self.folder / f"{name}.pid"
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} wrote no pid file {pidfile}\n{self.logs()}")
            time.sleep(0.05)
        self.pids[name] = int(pidfile.read_text().split()[0])

    def _wait_idle(self, timeout: float) -> None:
        deadline, out = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            out = (r.stdout + r.stderr).strip()
            if r.returncode == 0 and out == "idle":
                return
            time.sleep(0.1)
        raise RuntimeError(f"the node did not become idle in {timeout:.0f} s (sinfo: {out!r})\n{self.logs()}")

    def logs(self, lines: int = 15) -> str:
        """The last lines of each daemon's log (for error messages)."""
        out = []
        for name in ("munged", "slurmctld", "slurmd"):
            f = self.folder / f"{name}.log"
            if f.exists():
                out.append(f"--- {f}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def squeue(self) -> list[dict]:
        """Every job the controller still knows (any state): id, name, state."""
        r = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%j|%T"], env=self.env, capture_output=True,
                           text=True, check=True)
        return [dict(zip(("id", "name", "state"), ln.split("|", 2))) for ln in r.stdout.splitlines() if ln.strip()]

    def stop(self) -> None:
        """Cancel the remaining jobs, then stop the daemons (SIGTERM, SIGKILL after 10 s) by their pids."""
        if "slurmctld" in self.pids and _alive(self.pids["slurmctld"]):
            subprocess.run(["scancel", f"--user={os.getuid()}"], env=self.env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    if all(j["state"] not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
                           for j in self.squeue()):
                        break
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                    break
                time.sleep(0.1)
        stopping = []
        for name in DAEMONS:
            pid = self.pids.pop(name, None)
            if pid is not None and _is(pid, name):  # else gone already (and the pid perhaps reused)
                try:
                    os.kill(pid, signal.SIGTERM)
                    stopping.append(pid)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in stopping) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in stopping:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _is(pid: int, name: str) -> bool:
    """Whether process ``pid`` is still the daemon ``name`` (its command line names it)."""
    try:
        return name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie left unreaped by a container's init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
