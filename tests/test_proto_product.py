"""The proto as a product: linted, compatible with its release, documented."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "proto"))

import breaking  # noqa: E402  (proto/breaking.py)
import descriptors  # noqa: E402
import reference  # noqa: E402

BUF = shutil.which("buf", path=str(pathlib.Path(sys.executable).parent))


@pytest.fixture(scope="module")
def current():
    return descriptors.compile_set()


@pytest.fixture
def released():
    return breaking.load_snapshot()


def contract(descriptor_set):
    """The alquery file of a descriptor set (which may hold imports too)."""
    (file,) = [f for f in descriptor_set.file if f.name.startswith("alquery/")]
    return file


def test_every_element_of_the_proto_has_a_comment(current):
    assert reference.missing_comments(contract(current)) == []


def test_a_missing_comment_is_found(current):
    file = contract(current)
    for location in file.source_code_info.location:
        if location.leading_comments.strip() == "Which measure to rank by.":
            location.leading_comments = ""
    assert reference.missing_comments(file) == [
        "field UncertaintyStrategy.method"
    ]


def test_committed_reference_page_is_up_to_date():
    committed = reference.PAGE.read_text()
    assert committed == reference.render_all(), (
        "docs/reference.md is stale: run `python proto/generate.py` and commit"
    )


def test_reference_page_covers_every_rpc_message_and_enum(current):
    page = reference.PAGE.read_text()
    headings = {line[3:] for line in page.splitlines() if line.startswith("## ")}
    names = {
        name
        for kind, name, _ in reference.elements(contract(current))
        if kind in ("service", "message", "enum")
    }
    assert names == headings
    for method in contract(current).service[0].method:
        assert f"| `{method.name}` |" in page


def test_current_proto_only_adds_to_the_released_one(current, released):
    assert breaking.compare(released, current) == []


def field(descriptor_set, message, name):
    (found,) = [
        f
        for m in contract(descriptor_set).message_type
        if m.name == message
        for f in m.field
        if f.name == name
    ]
    return found


def test_removed_renumbered_and_retyped_fields_are_breaking(current, released):
    edited = type(current)()
    edited.CopyFrom(current)
    field(edited, "RankRequest", "batch_size").number = 99
    field(edited, "RankRequest", "seed").name = "random_seed"
    field(edited, "Tensor", "shape").type = field(edited, "Tensor", "shape").TYPE_INT32
    request = [m for m in contract(edited).message_type if m.name == "RankRequest"][0]
    omit = [f for f in request.field if f.name == "omit_scores"][0]
    request.field.remove(omit)

    assert breaking.compare(released, edited) == [
        "alquery.v1.Tensor.shape = 2: type changed from int64 to int32",
        "alquery.v1.RankRequest.batch_size = 8: renumbered to 99",
        "alquery.v1.RankRequest.seed = 9: renamed to random_seed",
        "alquery.v1.RankRequest.omit_scores = 10: removed",
    ]


def test_removed_and_renamed_enum_values_and_rpcs_are_breaking(current, released):
    edited = type(current)()
    edited.CopyFrom(current)
    file = contract(edited)
    dtype = [e for e in file.enum_type if e.name == "DType"][0]
    dtype.value[4].name = "D_TYPE_LONG"
    del dtype.value[3]
    file.service[0].method[0].output_type = ".alquery.v1.ScoreList"
    del file.service[0].method[1]

    assert breaking.compare(released, edited) == [
        "alquery.v1.DType.D_TYPE_INT32 = 3: removed",
        "alquery.v1.DType.D_TYPE_INT64 = 4: renamed to D_TYPE_LONG",
        "alquery.v1.QueryService.Rank: output_type changed from "
        ".alquery.v1.RankResponse to .alquery.v1.ScoreList",
        "alquery.v1.QueryService.ListStrategies: RPC removed",
    ]


def test_added_fields_and_values_are_not_breaking(current, released):
    edited = type(current)()
    edited.CopyFrom(current)
    file = contract(edited)
    request = [m for m in file.message_type if m.name == "RankRequest"][0]
    request.field.add(name="new_option", number=100, type=8, label=1)
    file.enum_type[0].value.add(name="D_TYPE_FLOAT16", number=5)
    assert breaking.compare(released, edited) == []


@pytest.mark.skipif(BUF is None, reason="buf (PyPI buf-bin, test extra) not installed")
@pytest.mark.parametrize(
    "command",
    [
        ["lint"],
        ["breaking", "--against", "proto/released/alquery_v1.binpb"],
    ],
    ids=["lint", "breaking"],
)
def test_buf_accepts_the_proto(command):
    done = subprocess.run(
        [BUF, *command], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
