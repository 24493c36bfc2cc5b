"""The image cannot be built here, so its command is run as the Dockerfile says: ENV, CMD, then HEALTHCHECK."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

from tests.conftest import ROOT, free_port

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instruction(name: str) -> str:
    """The text of the last ``name`` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line[len(name):].strip() for line in joined.splitlines() if line.startswith(name + " ")][-1]


def test_the_image_runs_as_uid_1000_with_dependencies_cached_before_the_code():
    assert "useradd -m -u 1000 user" in DOCKERFILE and _instruction("USER") == "user"
    assert DOCKERFILE.index("COPY requirements.txt") < DOCKERFILE.index("pip install") < DOCKERFILE.index("COPY --chown")
    assert _instruction("EXPOSE") == "7860"


def test_the_dockerfile_command_serves_and_passes_its_own_healthcheck(tmp_path):
    env_pairs = dict(pair.split("=", 1) for pair in shlex.split(_instruction("ENV")))
    assert env_pairs["PORT"] == "7860" and env_pairs["HOST"] == "0.0.0.0"
    command = json.loads(_instruction("CMD"))
    check = _instruction("HEALTHCHECK").split(" CMD ", 1)[1]
    port = str(free_port())  # the image's 7860 may be taken on a CI machine
    env = {**os.environ, **env_pairs, "PORT": port, "HOST": "127.0.0.1", "LOGOS_DATA_DIR": str(tmp_path / "data"),
           "LOGOS_DEMO": "small"}
    assert command[0] == "python"
    server = subprocess.Popen([sys.executable, *command[1:]], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while True:
            probe = subprocess.run(["sh", "-c", check.replace("python ", f"{sys.executable} ", 1)], env=env,
                                   capture_output=True)
            if probe.returncode == 0:
                break
            assert server.poll() is None and time.time() < deadline, probe.stderr.decode()[-500:]
            time.sleep(1)
        server.terminate()
        server.wait(30)
        down = subprocess.run(["sh", "-c", check.replace("python ", f"{sys.executable} ", 1)], env=env)
        assert down.returncode != 0  # the check fails when the app is down
    finally:
        if server.poll() is None:
            server.kill()
