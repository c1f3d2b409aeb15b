#!/usr/bin/env python3
"""Generates the model constraint tables from the installed botocore's service models.

For each service below it writes `<crate>/src/model_constraints.rs`: every operation whose input
carries a length, count, range or pattern constraint (`min`, `max`, `pattern` on a shape it
reaches), as the static tree `gantry_aws_proto::constraints` walks. The front enforces them on the
wire before the service runs (see crates/aws-proto/src/constraints.rs).

    scripts/gen-model-constraints.py            # rewrite the tables
    scripts/gen-model-constraints.py --check    # exit 1 if a table differs from the models
    scripts/gen-model-constraints.py --constrained-operations sts ec2
                                                # every operation whose input has a constraint

`crates/cli/tests/model_constraints.rs` runs the check, so a botocore upgrade that changes a
constraint fails the tests until the tables are regenerated.
"""

import argparse
import difflib
import re
import sys
from pathlib import Path

import botocore
import botocore.loaders

ROOT = Path(__file__).resolve().parents[1]

# (botocore service, crate dir, error code of a violation, member naming, operations left out)
SERVICES = [
    ("ecs", "crates/services/ecs", "InvalidParameterException", "Json", []),
    ("ecr", "crates/services/ecr", "InvalidParameterException", "Json", []),
    # PutLogEvents reports per-event problems in rejectedLogEventsInfo and checks its batch
    # limits in its handler, with CloudWatch's own wording.
    ("logs", "crates/services/logs", "InvalidParameterException", "Json", ["PutLogEvents"]),
    ("elbv2", "crates/services/elbv2", "ValidationError", "Query", []),
    ("kms", "crates/services/kms", "ValidationException", "Json", []),
    ("acm", "crates/services/acm", "ValidationException", "Json", []),
    ("secretsmanager", "crates/services/secretsmanager", "ValidationException", "Json", []),
    ("ssm", "crates/services/ssm", "ValidationException", "Json", []),
    ("codedeploy", "crates/services/codedeploy", "ValidationException", "Json", []),
    # Served on awsJson1.0 and awsQuery; CloudWatch words violations as the query protocol did.
    ("cloudwatch", "crates/services/cloudwatch", "ValidationError", "Query", []),
    ("application-autoscaling", "crates/services/autoscaling", "ValidationException", "Json", []),
    # The account alias pattern needs a lookahead the regex crate lacks; Gantry does not serve
    # account aliases (they answer NotImplemented).
    ("iam", "crates/services/iam", "ValidationError", "Query", ["CreateAccountAlias", "DeleteAccountAlias"]),
]

SCALARS = {"string", "blob", "integer", "long", "double", "float"}

# Patterns written with Java features Rust's regex has no equivalent for (UTF-16 surrogate
# ranges, `\p{Print}`, look-ahead), or too large for its compiled-size limit (a counted
# repetition of 100,000). They are left out of the tables (the shapes' length limits stay); the
# services check the values that matter themselves. The SSM ones constrain only operations
# Gantry does not serve (OpsItems, documents, instance properties, resource policies).
# crates/cli/tests/model_constraints.rs fails when a pattern in a table does not compile.
UNTRANSLATABLE_PATTERNS = {
    r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*",
    r"\p{Print}+",
    r"(?!((^[ ]+.*)|(.*([\u0000-\u001f]|[\u007f-\u009f]|[:/|])+.*)|(.*[ ]+$))).+",
    r"^(?!\s*$).+",
    r"^.{1,100000}$",
    # ACM's domain names (look-ahead): only RequestCertificate and ResendValidationEmail take
    # them, which Gantry does not serve.
    r"(\*\.)?(((?!-)[A-Za-z0-9-]{0,62}[A-Za-z0-9])\.)+((?!-)[A-Za-z0-9-]{1,62}[A-Za-z0-9])",
}


def upper_snake(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return re.sub(r"[^A-Za-z0-9]", "_", s).upper()


def rust_str(s: str) -> str:
    hashes = "#"
    while f'"{hashes}' in s:
        hashes += "#"
    return f'r{hashes}"{s}"{hashes}'


def opt(v, kind: str) -> str:
    if v is None:
        return "None"
    if kind == "float":
        return f"Some({float(v)!r})"
    return f"Some({int(v)})"


def own_constraint(shape: dict) -> bool:
    # Members the model marks sensitive (secret values, plaintexts, passwords) are left to their
    # services, which check them without echoing the value ("Value at 'secretString' failed to
    # satisfy constraint: ..."), as AWS does: the tables' messages quote the offending value, and
    # the front logs client errors.
    if shape.get("sensitive"):
        return False
    return any(k in shape for k in ("min", "max", "pattern"))


def children(shape: dict):
    t = shape["type"]
    if t == "structure":
        return [m["shape"] for m in shape.get("members", {}).values()]
    if t == "list":
        return [shape["member"]["shape"]]
    if t == "map":
        return [shape["key"]["shape"], shape["value"]["shape"]]
    return []


def constrained_shapes(shapes: dict, roots) -> set:
    """Shapes reachable from `roots` that carry a constraint or reach one."""
    reach = {}
    order = []
    seen = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        order.append(n)
        stack.extend(children(shapes[n]))
    marked = {n for n in seen if own_constraint(shapes[n]) and shapes[n]["type"] in SCALARS | {"list", "map"}}
    changed = True
    while changed:
        changed = False
        for n in order:
            if n not in marked and any(c in marked for c in children(shapes[n])):
                marked.add(n)
                changed = True
    return marked


def load(service: str, excluded=()):
    """The model, its shapes without untranslatable patterns, its operations' input shapes (but
    `excluded`'s), and the shapes that carry or reach a constraint."""
    model = botocore.loaders.Loader().load_service_model(service, "service-2")
    shapes = {
        name: {k: v for k, v in shape.items() if not (k == "pattern" and v in UNTRANSLATABLE_PATTERNS)}
        for name, shape in model["shapes"].items()
    }
    ops = {
        name: op["input"]["shape"]
        for name, op in model["operations"].items()
        if "input" in op and name not in excluded
    }
    return model, shapes, ops, constrained_shapes(shapes, ops.values())


def generate(service: str, error_code: str, naming: str, excluded) -> str:
    model, shapes, ops, marked = load(service, excluded)
    names = {n: "SHAPE_" + upper_snake(n) for n in marked}
    assert len(set(names.values())) == len(names), "two shapes with one static name"
    patterns = {}

    def pattern_ref(p: str) -> str:
        if p not in patterns:
            patterns[p] = f"PATTERN_{len(patterns) + 1}"
        return "&" + patterns[p]

    uses_any = []

    def ref(n: str) -> str:
        if n in marked:
            return "&" + names[n]
        uses_any.append(n)
        return "&ANY"

    out_shapes = []
    for n in sorted(marked):
        s = shapes[n]
        t = s["type"]
        if t == "structure":
            members = []
            for mname, m in s.get("members", {}).items():
                if m["shape"] in marked:
                    wire = m.get("locationName", mname)
                    members.append(f"Member {{ name: {rust_str(wire)}, shape: {ref(m['shape'])} }}")
            body = "Shape::Structure(&[" + ", ".join(members) + "])"
        elif t == "list":
            body = (f"Shape::List {{ member: {ref(s['member']['shape'])}, min: {opt(s.get('min'), 'int')}, "
                    f"max: {opt(s.get('max'), 'int')} }}")
        elif t == "map":
            body = (f"Shape::Map {{ key: {ref(s['key']['shape'])}, value: {ref(s['value']['shape'])}, "
                    f"min: {opt(s.get('min'), 'int')}, max: {opt(s.get('max'), 'int')} }}")
        elif t == "string":
            pat = f"Some({pattern_ref(s['pattern'])})" if "pattern" in s else "None"
            body = f"Shape::String {{ min: {opt(s.get('min'), 'int')}, max: {opt(s.get('max'), 'int')}, pattern: {pat} }}"
        elif t == "blob":
            body = f"Shape::Blob {{ min: {opt(s.get('min'), 'int')}, max: {opt(s.get('max'), 'int')} }}"
        elif t in ("integer", "long"):
            body = f"Shape::Integer {{ min: {opt(s.get('min'), 'int')}, max: {opt(s.get('max'), 'int')} }}"
        elif t in ("double", "float"):
            body = f"Shape::Float {{ min: {opt(s.get('min'), 'float')}, max: {opt(s.get('max'), 'float')} }}"
        else:
            raise SystemExit(f"{service}: constrained shape {n} of type {t} is not supported")
        out_shapes.append(f"/// `{n}`\nstatic {names[n]}: Shape = {body};")

    operations = [
        f"        Operation {{ name: {rust_str(op)}, input: {ref(shape)} }},"
        for op, shape in sorted(ops.items())
        if shape in marked
    ]
    meta = model["metadata"]
    lines = [
        f"//! The {meta.get('serviceId', service)} model's constraints on operation inputs, as",
        "//! `gantry_aws_proto::constraints` enforces them on the wire.",
        "//!",
        f"//! @generated by scripts/gen-model-constraints.py from botocore {botocore.__version__}",
        f"//! ({service} {meta['apiVersion']}). Do not edit: rerun the script.",
        "",
        "use gantry_aws_proto::constraints::{Constraints, Member, Naming, Operation, "
        + ("Pattern, " if patterns else "")
        + "Shape};",
        "",
        "/// Every constrained operation input of the model, by operation name.",
        "pub static CONSTRAINTS: Constraints = Constraints {",
        f"    error_code: {rust_str(error_code)},",
        f"    naming: Naming::{naming},",
        "    operations: &[",
        *operations,
        "    ],",
        "};",
        "",
    ]
    if uses_any:
        lines += ["static ANY: Shape = Shape::Any;", ""]
    for p, ident in patterns.items():
        lines.append(f"static {ident}: Pattern = Pattern::new({rust_str(p)});")
    lines.append("")
    lines.extend(out_shapes)
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="report drift instead of writing")
    ap.add_argument("--constrained-operations", nargs="+", metavar="SERVICE",
                    help="print `service Operation` for every operation of these botocore models "
                         "whose input carries a constraint the tables could hold")
    args = ap.parse_args()
    if args.constrained_operations:
        for service in args.constrained_operations:
            _, _, ops, marked = load(service)
            for op, shape in sorted(ops.items()):
                if shape in marked:
                    print(service, op)
        return 0
    drift = False
    for service, crate, code, naming, excluded in SERVICES:
        path = ROOT / crate / "src" / "model_constraints.rs"
        text = generate(service, code, naming, excluded)
        old = path.read_text() if path.exists() else ""
        if args.check:
            if old != text:
                drift = True
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), str(path), f"{path} (from botocore)"))
        elif old != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if drift:
        print("\nThe model constraint tables differ from the installed botocore's models: "
              "run scripts/gen-model-constraints.py and review the change.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
