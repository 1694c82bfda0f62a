"""The agent as a newcomer installs it: `pip install` into a fresh virtualenv (no Django), then the wrapper."""

import shutil
import subprocess
import sys
import time

import pytest

from profiles.models import AgentInstance
from tests.conftest import TenantFixture

from .conftest import API, ROOT

pytestmark = [pytest.mark.e2e]

SCRIPT = """
import threading, time
def parked():
    time.sleep(60)
for n in range(3):
    threading.Thread(target=parked, name=f"parked-{n}", daemon=True).start()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    sum(i * i for i in range(10000))
"""


def test_pip_install_into_a_fresh_venv_then_the_wrapper_profiles_a_script(e2e, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    source = shutil.copytree(ROOT / "agent", tmp_path / "agent-src")  # the build leaves the repo clean
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr
    no_django = subprocess.run([str(python), "-c", "import django"], capture_output=True, text=True, timeout=60)
    assert "No module named 'django'" in no_django.stderr

    tenant = TenantFixture("e2e-venv")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen(
        [str(python), "-m", "profiling_agent", "run", "--server", e2e.url, "--tenant", tenant.external_id,
         "--token", tenant.agent_raw, "--service", "venv-svc", "--poll-seconds", "0.5", "--", str(script)],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )
    e2e.agents.append(agent)
    deadline = time.monotonic() + 30
    while not AgentInstance.objects.filter(tenant=tenant.tenant, service="venv-svc").exists():
        assert time.monotonic() < deadline and agent.poll() is None, (tmp_path / "agent.log").read_text()
        time.sleep(0.2)
    status, body = e2e.request(
        "POST", f"{API}/start", tenant.api_raw, tenant.external_id,
        {"service": "venv-svc", "profileType": "goroutine", "durationSeconds": 2},
    )
    assert status == 202 and body["warnings"] == [], body
    body = e2e.wait_for(tenant, body["id"], lambda b: b.get("status") in ("completed", "failed"), timeout=60)
    assert body["status"] == "completed", f"{body['error']}\n{(tmp_path / 'agent.log').read_text()}"
    threads = {f["function"] for f in body["topFunctions"]}
    assert "parked" in threads
    assert body["instance"]["pid"] == agent.pid
