"""Copy kubequery's schema and Go type layouts from ../shared into the package.

An installed wheel has no ../shared, so the registry ships its own minified copy. Re-run this after
the shared data set changes; `kq_pipeline_tests/registry` fails until you do.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "kubequery"
OUT = ROOT / "kq_pipeline" / "registry"


def main() -> int:
    for name in ("schema.json", "go_types.json"):
        data = json.loads((SHARED / name).read_text())
        (OUT / name).write_text(json.dumps(data, separators=(",", ":"), sort_keys=False) + "\n")
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
