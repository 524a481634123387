"""The Node.js example client gets the same ranking as the Python client."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

NODE_DIR = pathlib.Path(__file__).resolve().parents[2] / "client" / "node"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the example's locked packages installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed; the Node client is not tested")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=NODE_DIR, check=True, capture_output=True, timeout=300,
        )
    return node


def test_node_client_ranks_as_the_python_client(node, target, client, tmp_path):
    rng = np.random.default_rng(9)
    probabilities = rng.dirichlet(np.ones(4), size=40)
    embeddings = rng.normal(size=(40, 6)).astype(np.float32)
    batch_size = 7
    input_path = tmp_path / "input.json"
    input_path.write_text(
        json.dumps(
            {
                # repr-exact floats: JSON carries every bit of a float64, and
                # a float32 survives the round trip through a double.
                "probabilities": probabilities.tolist(),
                "embeddings": embeddings.tolist(),
                "batch_size": batch_size,
            }
        )
    )

    done = subprocess.run(
        [node, str(NODE_DIR / "rank.js"), target, str(input_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)

    margin = client.rank("uncertainty.margin", batch_size, probabilities=probabilities)
    kcenter = client.rank("diversity.kcenter", batch_size, embeddings=embeddings)
    assert answers == {
        "uncertainty.margin": margin.indices.tolist(),
        "diversity.kcenter": kcenter.indices.tolist(),
    }
    assert len(set(answers["diversity.kcenter"])) == batch_size


def test_node_client_reports_the_status_of_a_refused_request(node, target, tmp_path):
    input_path = tmp_path / "input.json"
    input_path.write_text(
        json.dumps(
            {"probabilities": [[0.5, 0.4]], "embeddings": [[0.0]], "batch_size": 1}
        )
    )
    done = subprocess.run(
        [node, str(NODE_DIR / "rank.js"), target, str(input_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("INVALID_ARGUMENT: pool.probabilities: row 0")
