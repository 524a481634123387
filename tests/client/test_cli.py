"""The ``alquery`` command line against a real server."""

import json
import subprocess
import sys

import numpy as np
import pytest

from alquery.client import cli


@pytest.fixture
def files(tmp_path):
    def save(name, values, dtype=None):
        path = tmp_path / f"{name}.npy"
        np.save(path, np.asarray(values, dtype=dtype))
        return str(path)

    return save


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_rank_prints_indices_scores_and_strategy_as_json(target, files, capsys):
    probabilities = files("p", [[0.7, 0.3], [0.55, 0.45], [0.9, 0.1]])
    status, out, _ = run(
        capsys, "rank", "--target", target, "--strategy",
        "uncertainty.least_confidence", "--batch-size", "2",
        "--probabilities", probabilities,
    )
    assert status == 0
    answer = json.loads(out)
    assert answer["indices"] == [1, 0]
    assert answer["scores"] == pytest.approx([0.45, 0.3])
    assert answer["strategy"] == "uncertainty.least_confidence"
    assert set(answer) == {"indices", "scores", "strategy"}


def test_three_axis_file_is_read_as_passes(target, files, capsys):
    # Sample 0's two passes disagree (mean 0.5/0.5); sample 1's agree.
    passes = files("passes", [[[0.9, 0.1], [0.1, 0.9]], [[0.8, 0.2], [0.8, 0.2]]])
    status, out, _ = run(
        capsys, "rank", "--target", target, "--strategy", "uncertainty.margin",
        "--batch-size", "2", "--probabilities", passes,
    )
    assert status == 0
    assert json.loads(out)["indices"] == [0, 1]


def test_params_and_all_validation_flags(target, files, capsys):
    status, out, _ = run(
        capsys, "rank", "--target", target,
        "--strategy", "credibility.validation_knn", "--batch-size", "3",
        "--embeddings", files("e", [[0.4], [9.0], [5.4]]),
        "--validation-probabilities", files("vp", [[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]]),
        "--validation-labels", files("vl", [0, 0, 1], np.int64),
        "--validation-embeddings", files("ve", [[0.0], [1.0], [10.0]]),
        "--param", "n_neighbors=2",
    )
    assert status == 0
    assert json.loads(out)["indices"] == [1, 2, 0]


def test_kcenter_with_labeled_embeddings(target, files, capsys):
    status, out, _ = run(
        capsys, "rank", "--target", target, "--strategy", "diversity.kcenter",
        "--batch-size", "2",
        "--embeddings", files("e", [[0.0, 0.0], [5.0, 0.0], [1.0, 0.0], [10.0, 0.0]]),
        "--labeled-embeddings", files("l", [[0.0, 0.0]]),
    )
    assert status == 0
    assert json.loads(out)["indices"] == [3, 1]


def test_error_status_goes_to_stderr_with_nonzero_exit(target, files, capsys):
    probabilities = files("p", [[0.7, 0.3]])
    status, out, err = run(
        capsys, "rank", "--target", target, "--strategy", "uncertainty.margin",
        "--batch-size", "0", "--probabilities", probabilities,
    )
    assert status == 1
    assert out == ""
    assert err.startswith("INVALID_ARGUMENT: batch_size: got 0")


def test_clamped_batch_warns_on_stderr(target, files, capsys):
    status, out, err = run(
        capsys, "rank", "--target", target, "--strategy", "uncertainty.margin",
        "--batch-size", "5", "--probabilities", files("p", [[0.7, 0.3]]),
    )
    assert status == 0 and json.loads(out)["indices"] == [0]
    assert "warning: batch_size=5 exceeds the pool size" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--strategy", "uncertainty.entrophy"], "INVALID_ARGUMENT: strategy: unknown"),
        (["--param", "k=3"], "INVALID_ARGUMENT: params: 'k' is not a uncertainty"),
    ],
)
def test_client_side_refusals_use_the_same_format(target, files, capsys, argv, message):
    base = ["rank", "--target", target, "--strategy", "uncertainty.margin",
            "--batch-size", "1", "--probabilities", files("p", [[0.7, 0.3]])]
    status, _, err = run(capsys, *base, *argv)
    assert status == 1
    assert err.startswith(message)


def test_unreadable_file_is_a_usage_error(target, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["rank", "--target", target, "--strategy", "uncertainty.margin",
                  "--batch-size", "1", "--probabilities", str(tmp_path / "nope.npy")])
    assert raised.value.code == 2
    assert "--probabilities" in capsys.readouterr().err


def save_npz(path):
    with open(path, "wb") as file:  # a path would get ".npz" appended
        np.savez(file, a=np.ones((2, 2)))


@pytest.mark.parametrize(
    "write, message",
    [
        # An empty file raised EOFError: a traceback and exit status 1.
        (lambda path: path.write_bytes(b""), "empty file"),
        # An .npz archive was sent as the array of its member names and
        # refused by the client as "dtype <U1 is not numeric".
        (save_npz, "an .npz archive"),
    ],
)
def test_files_that_hold_no_npy_array_are_usage_errors(
    target, tmp_path, capsys, write, message
):
    path = tmp_path / "p.npy"
    write(path)
    with pytest.raises(SystemExit) as raised:
        cli.main(["rank", "--target", target, "--strategy", "uncertainty.margin",
                  "--batch-size", "1", "--probabilities", str(path)])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert f"--probabilities {path}: cannot read a .npy array" in err
    assert message in err


def test_strategies_command_through_the_installed_entry_point(target):
    done = subprocess.run(
        [sys.executable, "-m", "alquery.client.cli", "strategies", "--target", target],
        capture_output=True, text=True, timeout=60, check=True,
    )
    listed = json.loads(done.stdout)
    names = {item["name"] for item in listed}
    assert "diversity.kcenter" in names and "credibility.validation_knn" in names
    assert all("parameters" in item for item in listed)


def test_unreachable_server_is_reported_as_unavailable(files, capsys):
    status, _, err = run(
        capsys, "rank", "--target", "127.0.0.1:1", "--strategy", "uncertainty.margin",
        "--batch-size", "1", "--probabilities", files("p", [[0.7, 0.3]]),
        "--timeout", "5",
    )
    assert status == 1
    assert err.startswith("UNAVAILABLE: ")


@pytest.mark.parametrize(
    "flags",
    [
        ["--port", "70000"],
        ["--port", "-1"],
        ["--metrics-port", "70000"],
        ["--threads", "0"],
        ["--max-message-mib", "0"],
        ["--max-message-mib", "2048"],
        ["--grace-seconds", "0"],
        ["--log-level", "LOUD"],
    ],
)
def test_bad_serve_flags_are_usage_errors(flags, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["serve", *flags])
    assert raised.value.code == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags", [["--seed", "-1"], ["--batch-size", "99999999999999999999"]]
)
def test_bad_rank_numbers_are_usage_errors(target, files, flags, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["rank", "--target", target, "--strategy", "uncertainty.margin",
                  "--batch-size", "1", "--probabilities", files("p", [[0.7, 0.3]]),
                  *flags])
    assert raised.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_selection_flags_send_a_sampling_mode(target, client, files, capsys):
    # Ten samples, margin scores all different; a softmax draw at a high
    # temperature is near uniform, so over seeds it leaves the top-3.
    rows = np.linspace(0.5, 0.95, 10)
    probabilities = np.stack([rows, 1 - rows], axis=1)
    path = files("p", probabilities)
    drawn = []
    for seed in range(5):
        status, out, _ = run(
            capsys, "rank", "--target", target, "--strategy", "uncertainty.margin",
            "--batch-size", "3", "--probabilities", path, "--seed", str(seed),
            "--selection", "softmax", "--temperature", "100",
        )
        assert status == 0
        drawn.append(json.loads(out)["indices"])
        same = client.rank(
            "uncertainty.margin", 3, probabilities=probabilities, seed=seed,
            selection="softmax", temperature=100,
        )
        assert drawn[-1] == same.indices.tolist()
    top_k = client.rank("uncertainty.margin", 3, probabilities=probabilities)
    assert top_k.indices.tolist() == [0, 1, 2]
    assert any(picks != [0, 1, 2] for picks in drawn)


@pytest.mark.parametrize(
    "flags", [["--selection", "gumbel"], ["--temperature", "0"]]
)
def test_bad_selection_flags_are_usage_errors(target, files, flags, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["rank", "--target", target, "--strategy", "uncertainty.margin",
                  "--batch-size", "1", "--probabilities", files("p", [[0.7, 0.3]]),
                  *flags])
    assert raised.value.code == 2
    assert flags[0] in capsys.readouterr().err
