"""The systemd units and the cron example: the keys the daemon's operation depends on."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "scripts" / "systemd"
UNITS = ("agent-trader.service", "agent-trader-health.service", "agent-trader-health.timer")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"), source=name)
    return parser


def test_daemon_unit_when_parsed_then_restarts_on_failure_and_stops_gracefully():
    service = unit("agent-trader.service")["Service"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "30"
    assert service["ExecStart"] == "/opt/agent-trader/.venv/bin/python main.py run"
    assert service["WorkingDirectory"] == "/opt/agent-trader"
    assert service["EnvironmentFile"] == "-/opt/agent-trader/.env"
    assert service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"] == "120"
    assert service["User"] == "agent-trader"
    assert service["NoNewPrivileges"] == "yes"
    assert set(service["ReadWritePaths"].split()) == {"/opt/agent-trader/var", "/opt/agent-trader/logs"}
    assert unit("agent-trader.service")["Install"]["WantedBy"] == "multi-user.target"


def test_health_units_when_parsed_then_oneshot_every_15_minutes():
    service = unit("agent-trader-health.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == "/opt/agent-trader/.venv/bin/python main.py health"
    timer = unit("agent-trader-health.timer")
    assert timer["Timer"]["OnCalendar"] == "*:0/15"
    assert timer["Timer"]["Unit"] == "agent-trader-health.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_units_when_verified_by_systemd_then_clean(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    system_units = Path("/usr/lib/systemd/system")
    if analyze is None or not system_units.is_dir():
        pytest.skip("systemd-analyze (and /usr/lib/systemd/system) not available")
    # a throw-away root holding the units, the system's own units and an executable where the venv python will be
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    python = tmp_path / "opt/agent-trader/.venv/bin/python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    target = tmp_path / "etc/systemd/system"
    target.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(SYSTEMD / name, target / name)
    proc = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", *(str(target / n) for n in UNITS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


def cron_jobs() -> list[str]:
    lines = (ROOT / "scripts" / "cron.example").read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#") and "=" not in ln.split()[0]]


def test_cron_example_when_read_then_one_run_per_session_in_new_york_time():
    text = (ROOT / "scripts" / "cron.example").read_text(encoding="utf-8")
    assert "CRON_TZ=America/New_York" in text.splitlines()
    runs = [job for job in cron_jobs() if "main.py run --once" in job]
    assert len(runs) == 1
    assert runs[0].split()[:5] == ["45", "9", "*", "*", "1-5"]
    health = [job for job in cron_jobs() if "main.py health" in job]
    assert len(health) == 1 and "logger" in health[0]


def test_cron_example_when_read_then_the_health_check_runs_around_the_clock():
    # the daemon's schedule is in `main.py health` itself: a check at 03:00 or on a Sunday is quiet unless something
    # is wrong, and a database that went away at night is reported before the open
    (health,) = [job for job in cron_jobs() if "main.py health" in job]
    assert health.split()[:5] == ["*/15", "*", "*", "*", "*"]


def _run_cron_job(job: str, project: Path, exit_code: int) -> subprocess.CompletedProcess[str]:
    """The job's command as cron's /bin/sh runs it, in a stand-in project whose interpreter prints and exits with
    ``exit_code``; `logger` is a stand-in that swallows its input (syslog)."""
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(f'#!/bin/sh\necho "output of $*"\nexit {exit_code}\n')
    python.chmod(0o755)
    stubs = project / "stubs"
    stubs.mkdir(exist_ok=True)
    (stubs / "logger").write_text("#!/bin/sh\ncat > /dev/null\n")
    (stubs / "logger").chmod(0o755)
    command = " ".join(job.split()[5:]).replace("/opt/agent-trader", str(project))
    return subprocess.run(
        ["/bin/sh", "-c", command],
        env={"PATH": f"{stubs}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("which", ["main.py run --once", "main.py health"])
def test_cron_jobs_when_the_command_fails_then_cron_gets_output_to_mail_and_nothing_when_it_succeeds(
    which: str, tmp_path: Path
):
    (job,) = [j for j in cron_jobs() if which in j]
    failed = _run_cron_job(job, tmp_path, exit_code=1)
    assert failed.returncode != 0
    assert "failed with exit 1" in failed.stdout and f"output of {which}" in failed.stdout  # cron mails this to MAILTO
    ok = _run_cron_job(job, tmp_path, exit_code=0)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")  # no mail when all is well


def test_cron_example_when_jobs_read_then_no_unescaped_percent():
    # cron turns an unescaped % in a command into a newline
    assert all("%" not in job.replace("\\%", "") for job in cron_jobs())
