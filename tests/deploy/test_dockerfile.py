"""The Dockerfile's shape (no image is built here: the machine has no
container daemon), and its health-check command run against a real server."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from alquery.client.local import LocalServer

DOCKERFILE = Path(__file__).parents[2] / "Dockerfile"


def instructions():
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_multi_stage_non_root_exec_form():
    found = instructions()
    stages = [line for line in found if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert any(line.startswith("COPY --from=build ") for line in found)
    user = [line for line in found if line.startswith("USER ")][-1]
    assert not re.match(r"USER (0|root)\b", user)
    entrypoint = next(line for line in found if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["alquery", "serve"]


def test_health_check_command_passes_against_a_serving_server():
    line = next(line for line in instructions() if line.startswith("HEALTHCHECK "))
    command = json.loads(line[line.index("CMD ") + 4:])
    assert command[:2] == ["python", "-c"]
    with LocalServer(["--health-port", "0"]) as server:
        port = re.search(r"health_port=(\d+)", "".join(server.log)).group(1)
        env = dict(os.environ, ALQUERY_HEALTH_PORT=port)
        done = subprocess.run(
            [sys.executable, "-c", command[2]], env=env, timeout=30,
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr
        server.terminate()
        # Draining or gone: the check now fails.
        server.process.wait(30)
        failed = subprocess.run(
            [sys.executable, "-c", command[2]], env=env, timeout=30,
            capture_output=True, text=True,
        )
        assert failed.returncode != 0
