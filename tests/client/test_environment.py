"""Every ``alquery serve`` flag can come from an ALQUERY_* variable, and the
README's configuration table lists each one."""

import re
from pathlib import Path

import pytest

from alquery.client import cli
from alquery.client.environment import settable_flags, variable_name

README = Path(__file__).parents[2] / "README.md"


def serve_parser(monkeypatch, **environ):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    parser = cli._parser()
    return parser, parser._subparsers._group_actions[0].choices["serve"]


def test_variable_names():
    assert variable_name("--metrics-port") == "ALQUERY_METRICS_PORT"
    assert variable_name("--tls-client-ca") == "ALQUERY_TLS_CLIENT_CA"


def test_variables_set_defaults_and_flags_win(monkeypatch):
    parser, _ = serve_parser(
        monkeypatch, ALQUERY_PORT="6000", ALQUERY_LOG_LEVEL="debug",
        ALQUERY_LOG_FORMAT="json", ALQUERY_GRACE_SECONDS="2.5",
    )
    args = parser.parse_args(["serve"])
    assert (args.port, args.log_level, args.log_format) == (6000, "DEBUG", "json")
    assert args.grace_seconds == 2.5
    assert parser.parse_args(["serve", "--port", "7000"]).port == 7000


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("ALQUERY_PORT", "70000", "ALQUERY_PORT='70000': 70000 is out of range"),
        ("ALQUERY_THREADS", "many", "ALQUERY_THREADS='many': 'many' is not an integer"),
        ("ALQUERY_LOG_FORMAT", "xml", "ALQUERY_LOG_FORMAT='xml': expected one of"),
    ],
)
def test_bad_variables_are_usage_errors_naming_the_variable(
    monkeypatch, capsys, variable, value, message
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as raised:
        cli._parser()
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_readme_table_lists_every_serve_flag_with_its_variable(monkeypatch):
    _, serve = serve_parser(monkeypatch)
    table = README.read_text().split("### Configuration", 1)[1].split("\n\n#", 1)[0]
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(ALQUERY_[A-Z_]+)` \|", table, re.M)
    assert rows, "no configuration table in the README"
    assert sorted(rows) == sorted((f, v) for f, v, _ in settable_flags(serve))
