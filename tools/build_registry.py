"""Copy kubequery's schema and Go type layouts from the test data into the package.

An installed wheel has no test data, so the registry ships its own minified copy of
kq_pipeline_tests/data/kubequery/{schema,go_types}.json. Re-run this after that data set is
refreshed (kq_pipeline_tests/data/README.md); `kq_pipeline_tests/registry` fails until you do.

    python tools/build_registry.py [KUBEQUERY_DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUBEQUERY_DATA = ROOT / "kq_pipeline_tests" / "data" / "kubequery"
OUT = ROOT / "kq_pipeline" / "registry"
FILES = ("schema.json", "go_types.json")


def minified(path: Path) -> str:
    """The package's form of a data file: the same JSON, key order kept, without whitespace."""
    return json.dumps(json.loads(path.read_text()), separators=(",", ":"), sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else KUBEQUERY_DATA
    missing = [name for name in FILES if not (source / name).is_file()]
    if missing:
        print(f"build_registry: {', '.join(missing)} not found in {source}", file=sys.stderr)
        return 2
    for name in FILES:
        (OUT / name).write_text(minified(source / name))
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
