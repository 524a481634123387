"""``alquery rank`` streams large pools and can draw an upload progress bar."""

import json

import numpy as np

from alquery.client import cli
from alquery.client.progress import ProgressBar


def test_rank_streams_over_the_threshold_and_draws_progress(target, tmp_path, capsys):
    path = tmp_path / "e.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.normal(size=(3_000, 200)).astype(np.float32))  # 2.3 MiB
    argv = ["rank", "--target", target, "--strategy", "diversity.kcenter",
            "--batch-size", "5", "--embeddings", str(path)]

    assert cli.main(argv) == 0
    unary_out, unary_err = capsys.readouterr()
    assert cli.main([*argv, "--stream-threshold-mib", "1", "--progress"]) == 0
    out, err = capsys.readouterr()

    assert json.loads(out) == json.loads(unary_out)
    assert "upload [" not in unary_err
    assert err.rstrip().endswith("100% 0.00/0.00 GiB")
    assert "\rupload [" in err


def test_progress_bar_redraws_on_each_new_percent_and_ends_the_line():
    lines = []

    class Stream:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    bar = ProgressBar(Stream(), width=10)
    for done in (0, 1, 2, 50, 100):
        bar(done, 100)
    drawn = [text for text in lines if text.startswith("\r")]
    assert len(drawn) == 5
    assert drawn[3] == "\rupload [#####     ]  50% 0.00/0.00 GiB"
    assert lines[-1] == "\n"
    bar(100, 100)
    assert lines[-1] == "\n" and len(lines) == 6
