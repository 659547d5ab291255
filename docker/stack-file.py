"""Print docker-compose.yml (+ overrides) as a file `docker stack deploy` accepts.

Docker 20.10's `docker stack deploy` rejects the Compose Specification's `profiles:` key (and
ignores `build:`), so this keeps the services of the default profile plus those of each
`--profile P`, drops `profiles:` and `build:`, and prints the merged YAML (variables such as
${TESTBED_DATA} are left for `docker stack deploy` to interpolate). Usage:

    python3 docker/stack-file.py [-f docker-compose.yml -f docker-compose.victoria.yml] [--profile jetson] > stack.yml
    docker stack deploy --resolve-image never -c stack.yml testbed
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Compose's override rule for what these files use: mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def stack_doc(doc: dict[str, Any], profiles: set[str]) -> dict[str, Any]:
    """The services to deploy (default profile + `profiles`), without profiles/build keys."""
    out = {k: v for k, v in doc.items() if not k.startswith("x-")}
    services = {}
    for name, service in doc.get("services", {}).items():
        wanted = service.get("profiles")
        if wanted and not profiles & set(wanted):
            continue
        services[name] = {k: v for k, v in service.items() if k not in ("profiles", "build")}
        needs = services[name].get("depends_on")
        if isinstance(needs, list):
            services[name]["depends_on"] = [n for n in needs if n in doc["services"]]
    out["services"] = services
    out["version"] = "3.9"  # docker stack deploy (20.10) needs a version key
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", dest="files", action="append", type=Path)
    parser.add_argument("--profile", action="append", default=[])
    args = parser.parse_args(argv)
    doc: dict[str, Any] = {}
    for path in args.files or [Path(__file__).resolve().parents[1] / "docker-compose.yml"]:
        doc = merge(doc, yaml.safe_load(path.read_text()))
    sys.stdout.write(yaml.safe_dump(stack_doc(doc, set(args.profile)), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
