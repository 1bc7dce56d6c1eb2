"""Every finding Security Hub (moto) holds, checked against AWS's own model of
AwsSecurityFinding (botocore's securityhub service-2.json), not ours: moto stores what it is
given. Usage: asff_check.py ENDPOINT REGION. Prints {"findings": [...], "errors": [...]}."""

import json
import re
import sys

import boto3
import botocore.session


def check(shape, value, path, errors):
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: a structure ({shape.name}) expected, got {type(value).__name__}")
            return
        for name in shape.required_members:
            if name not in value:
                errors.append(f"{path}: required member {name} missing")
        for k, v in value.items():
            if k not in shape.members:
                errors.append(f"{path}: {k} is not a member of {shape.name}")
            else:
                check(shape.members[k], v, f"{path}.{k}", errors)
    elif t == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: a list expected, got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            check(shape.member, v, f"{path}[{i}]", errors)
    elif t == "map":
        if not isinstance(value, dict):
            errors.append(f"{path}: a map expected, got {type(value).__name__}")
            return
        for k, v in value.items():
            check(shape.key, k, f"{path}<key {k!r}>", errors)
            check(shape.value, v, f"{path}[{k!r}]", errors)
    elif t == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: a string expected, got {type(value).__name__} {value!r}")
            return
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {shape.enum}")
        meta = shape.metadata
        if "min" in meta and len(value) < meta["min"]:
            errors.append(f"{path}: shorter than {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: longer than {meta['max']}")
        if "pattern" in meta:
            try:
                if not re.fullmatch(meta["pattern"], value, re.S):
                    errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
            except re.error:
                pass
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: an integer expected, got {value!r}")
    elif t in ("double", "float"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: a number expected, got {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: a boolean expected, got {value!r}")
    elif t == "timestamp":
        if not isinstance(value, (str, int, float)) and not hasattr(value, "isoformat"):
            errors.append(f"{path}: a timestamp expected, got {value!r}")


def main():
    endpoint, region = sys.argv[1], sys.argv[2]
    model = botocore.session.get_session().get_service_model("securityhub")
    shape = model.shape_for("AwsSecurityFinding")
    hub = boto3.client(
        "securityhub",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    findings = []
    for page in hub.get_paginator("get_findings").paginate():
        findings += page["Findings"]
    errors = []
    for f in findings:
        check(shape, f, f"Finding {f.get('Id')}", errors)
    # ASFF's documented limits that the model does not carry.
    for f in findings:
        for k, n in (("Title", 256), ("Description", 1024)):
            if len(f.get(k, "")) > n:
                errors.append(f"Finding {f.get('Id')}: {k} longer than {n}")
        if len(f.get("ProductFields", {})) > 50:
            errors.append(f"Finding {f.get('Id')}: more than 50 ProductFields")
    print(json.dumps({"findings": findings, "errors": errors}, default=str))


if __name__ == "__main__":
    main()
