#!/usr/bin/env python3
"""Writes the wire shapes of a service model that Gantry serves on more than one protocol.

CloudWatch is served on awsJson1.0 (what botocore sends) and on awsQuery (older SDKs, Terraform,
the AWS CLI v2 of Debian). Its handlers speak JSON; the query side converts form parameters to
JSON and JSON results to XML by walking these shapes. The file keeps, for every shape reachable
from an operation's input or output, its type and the members, list elements, map entries, XML
names and flattening the conversion needs, without documentation.

    scripts/gen-wire-shapes.py            # rewrite the files
    scripts/gen-wire-shapes.py --check    # exit 1 if a file differs from the models
"""

import argparse
import json
import sys
from pathlib import Path

import botocore
import botocore.loaders

ROOT = Path(__file__).resolve().parents[1]

# (botocore service, output file)
SERVICES = [
    ("cloudwatch", "crates/services/cloudwatch/src/model_shapes.json"),
]

KEEP = ("type", "flattened", "locationName", "timestampFormat")


def generate(service: str) -> str:
    model = botocore.loaders.Loader().load_service_model(service, "service-2")
    shapes = model["shapes"]
    out_shapes = {}
    todo = []
    ops = {}
    for name, op in sorted(model["operations"].items()):
        entry = {}
        if "input" in op:
            entry["input"] = op["input"]["shape"]
            todo.append(op["input"]["shape"])
        if "output" in op:
            entry["output"] = op["output"]["shape"]
            todo.append(op["output"]["shape"])
            if "resultWrapper" in op["output"]:
                entry["resultWrapper"] = op["output"]["resultWrapper"]
        ops[name] = entry
    while todo:
        name = todo.pop()
        if name in out_shapes:
            continue
        s = shapes[name]
        o = {k: s[k] for k in KEEP if k in s}
        if s["type"] == "structure":
            o["members"] = {}
            for m, ref in s.get("members", {}).items():
                r = {"shape": ref["shape"]}
                for k in ("locationName", "flattened"):
                    if k in ref:
                        r[k] = ref[k]
                o["members"][m] = r
                todo.append(ref["shape"])
        elif s["type"] == "list":
            o["member"] = {k: v for k, v in s["member"].items() if k in ("shape", "locationName")}
            todo.append(s["member"]["shape"])
        elif s["type"] == "map":
            for k in ("key", "value"):
                o[k] = {kk: v for kk, v in s[k].items() if kk in ("shape", "locationName")}
                todo.append(s[k]["shape"])
        out_shapes[name] = o
    doc = {
        "generatedBy": f"scripts/gen-wire-shapes.py from botocore {botocore.__version__} "
        f"({service} {model['metadata']['apiVersion']}); do not edit",
        "operations": ops,
        "shapes": dict(sorted(out_shapes.items())),
    }
    return json.dumps(doc, indent=0, sort_keys=False) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    failed = False
    for service, path in SERVICES:
        text = generate(service)
        target = ROOT / path
        if args.check:
            if not target.exists() or target.read_text() != text:
                print(f"{path} differs from the {service} model; rerun scripts/gen-wire-shapes.py")
                failed = True
        else:
            target.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
