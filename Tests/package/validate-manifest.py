#!/usr/bin/env python3
"""validate-manifest.py SCHEMA MANIFEST: checks every document of a YAML manifest against the bundled Kubernetes
definitions (Tests/package/k8s-schema.json) as kubectl's strict field validation does: a field the schema does not
know is an error, as are a wrong type, a missing required field and a value outside an enum. Prints one line per
error (`DaemonSet kube-system/kube-natd: spec.template.spec.hostNetwork: expected boolean, got string`) and exits 1
when there is any, 0 otherwise."""
import sys

import json
import yaml

TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def type_name(value):
    for name, kinds in (("null", (type(None),)), ("boolean", (bool,)), ("integer", (int,)), ("number", (float,)),
                        ("string", (str,)), ("array", (list,)), ("object", (dict,))):
        if isinstance(value, kinds):
            return name
    return type(value).__name__


def check(value, spec, path, definitions, errors):
    if "$ref" in spec:
        name = spec["$ref"]
        if name not in definitions:
            errors.append(f"{path}: the bundled schema has no definition {name}")
            return
        check_object(value, definitions[name], path, definitions, errors)
        return
    if spec.get("x-any"):
        # IntOrString, RawExtension, JSON.
        if not isinstance(value, (str, int, dict)) or isinstance(value, bool):
            errors.append(f"{path}: expected integer, string or object, got {type_name(value)}")
        return
    kind = spec.get("type")
    kinds = TYPES[kind]
    # YAML's true is a Python bool, and bool is an int: a boolean is never an integer or a number here.
    if not isinstance(value, kinds) or (kind in ("integer", "number") and isinstance(value, bool)):
        errors.append(f"{path}: expected {kind}, got {type_name(value)}")
        return
    if "enum" in spec and value not in spec["enum"]:
        errors.append(f"{path}: {value!r} is not one of {spec['enum']}")
    if kind == "array":
        for i, item in enumerate(value):
            check(item, spec["items"], f"{path}[{i}]", definitions, errors)
    elif kind == "object" and "additionalProperties" in spec:
        for key, item in value.items():
            check(item, spec["additionalProperties"], f"{path}.{key}", definitions, errors)


def check_object(value, definition, path, definitions, errors):
    if not isinstance(value, dict):
        errors.append(f"{path}: expected object, got {type_name(value)}")
        return
    properties = definition["properties"]
    for key in definition["required"]:
        if key not in value:
            errors.append(f"{path}.{key}: required field missing")
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in properties:
            errors.append(f"{where}: unknown field")
        elif item is not None:
            check(item, properties[key], where, definitions, errors)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: validate-manifest.py SCHEMA MANIFEST")
    schema = json.load(open(sys.argv[1], encoding="utf-8"))
    roots, definitions = schema["roots"], schema["definitions"]
    failed = False
    documents = [d for d in yaml.safe_load_all(open(sys.argv[2], encoding="utf-8")) if d is not None]
    if not documents:
        print(f"{sys.argv[2]}: no documents")
        sys.exit(1)
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            print(f"document {index}: not a mapping")
            failed = True
            continue
        meta = document.get("metadata") or {}
        name = "/".join(str(part) for part in (meta.get("namespace"), meta.get("name")) if part)
        label = f"{document.get('kind')} {name or '(no name)'}"
        root = roots.get(f"{document.get('apiVersion')} {document.get('kind')}")
        if root is None:
            print(f"{label}: apiVersion {document.get('apiVersion')!r} kind {document.get('kind')!r} "
                  f"is not one of the bundled kinds {sorted(roots)}")
            failed = True
            continue
        errors = []
        if not meta.get("name"):
            errors.append("metadata.name: required field missing")
        check_object(document, definitions[root], "", definitions, errors)
        for error in errors:
            print(f"{label}: {error}")
        failed = failed or bool(errors)
    sys.exit(1 if failed else 0)


main()
