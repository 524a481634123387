"""Generate the Python code for the proto into ``client/v1`` (``alquery.v1``).

Run ``python proto/generate.py`` after editing a ``.proto`` file and commit the
result; ``tests/test_proto.py`` fails while the committed code is stale. It
also rewrites the reference page ``docs/reference.md``.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT.parent / "client" / "v1"


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Compile every proto under ``proto/alquery/v1`` into ``out_dir``."""
    protos = sorted(PROTO_ROOT.glob("alquery/v1/*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--pyi_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on " + ", ".join(map(str, protos)))
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for produced in sorted(pathlib.Path(tmp, "alquery", "v1").iterdir()):
            target = out_dir / produced.name
            shutil.copyfile(produced, target)
            written.append(target)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    for path in generate(parser.parse_args().out):
        sys.stderr.write(f"wrote {path}\n")
    import reference  # beside this script; it renders docs/reference.md

    return reference.main([])


if __name__ == "__main__":
    sys.exit(main())
