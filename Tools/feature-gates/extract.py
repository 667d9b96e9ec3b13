#!/usr/bin/env python3
"""Extracts the feature-gate table kube-natd checks `--feature-gates` against from upstream's Go sources.

kube-proxy registers every gate of the global `utilfeature.DefaultMutableFeatureGate`: pkg/features'
`defaultVersionedKubernetesFeatureGates` (which relists the apiserver, apiextensions, controller-manager and
zpages gates), client-go's known features, and what cmd/kube-proxy/app/server.go's init() adds (component-base
logs and metrics). This script reads those Go files, takes for each gate the newest spec whose Version is <= the
target version (upstream's featureSpecAtEmulationVersion), and writes Sources/ProxyConfig/FeatureGateTable.swift.

Refresh (no network at build time; the inputs are saved copies of upstream files):
  1. Save the current upstream files (e.g. from the repository's snapshot, or the lead's read_file of
     kubernetes/kubernetes) into a directory:
       pkg/features/kube_features.go                                   (check its init() and imports for new sources)
       staging/src/k8s.io/apiserver/pkg/features/kube_features.go      (optional: relisted in pkg/features)
       staging/src/k8s.io/client-go/features/known_features.go
       staging/src/k8s.io/component-base/logs/api/v1/kube_features.go
       staging/src/k8s.io/component-base/metrics/features/kube_features.go
       staging/src/k8s.io/component-base/zpages/features/kube_features.go (optional: relisted in pkg/features)
  2. Find the version: the newest `version.MustParse("1.N")` in pkg/features, or DefaultKubeBinaryVersion in
     staging/src/k8s.io/component-base/version/base.go.
  3. python3 Tools/feature-gates/extract.py --version 1.N --source "<file: where it came from>" ... \\
         -o Sources/ProxyConfig/FeatureGateTable.swift DIR/*.go
  4. Build and run `swift test --filter FeatureGate` (through the wrapper); fix tests that name a gate upstream
     removed or regraduated.

Only names, defaults, stages and locks are taken (data); no upstream code is copied.
"""

import argparse
import re
import sys

STAGES = {"Alpha": "alpha", "Beta": "beta", "GA": "ga", "Deprecated": "deprecated", "PreAlpha": "preAlpha"}


def strip_comments(text):
    """Removes // and /* */ comments, keeping string literals (which may hold "//") intact."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if (c == '"' and text[j] == "\\") else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def version_key(v):
    return tuple(int(p) for p in v.split("."))


CONST_TYPED = re.compile(r'\b([A-Za-z_]\w*)\s+(?:featuregate\.)?Feature\s*=\s*"([^"]+)"')
CONST_CALL = re.compile(r'\b([A-Za-z_]\w*)\s*=\s*(?:featuregate\.)?Feature\(\s*"([^"]+)"\s*\)')
CONST_BOOL = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*(true|false)\b")
VERSIONED = re.compile(r"([A-Za-z_][\w.]*)\s*:\s*\{((?:\s*\{[^{}]*\}\s*,?)+)\s*\}")
SPEC = re.compile(r"\{([^{}]*)\}")
UNVERSIONED = re.compile(r"([A-Za-z_][\w.]*)\s*:\s*\{([^{}]*\bDefault\s*:[^{}]*)\}")


def parse_spec(body, bools, where):
    fields = {}
    for part in body.split(","):
        if ":" in part:
            k, v = part.split(":", 1)
            fields[k.strip()] = v.strip()
    if "Default" not in fields or "PreRelease" not in fields:
        return None
    default = fields["Default"]
    default = bools.get(default, default)
    if default not in ("true", "false"):
        sys.exit(f"{where}: cannot resolve Default {fields['Default']!r}")
    stage = fields["PreRelease"].split(".")[-1]
    if stage not in STAGES:
        sys.exit(f"{where}: unknown PreRelease {fields['PreRelease']!r}")
    version = None
    if "Version" in fields:
        m = re.search(r'"([0-9.]+)"', fields["Version"])
        if not m:
            sys.exit(f"{where}: cannot read Version {fields['Version']!r}")
        version = m.group(1)
    return {
        "version": version,
        "default": default == "true",
        "stage": stage,
        "locked": fields.get("LockToDefault", "false") == "true",
    }


def extract(paths):
    names, bools, gates = {}, {}, {}  # gates: identifier -> (file, [specs])
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = strip_comments(f.read())
        texts.append((path, text))
        for rx in (CONST_TYPED, CONST_CALL):
            for ident, name in rx.findall(text):
                names[ident] = name
        for ident, value in CONST_BOOL.findall(text):
            bools[ident] = value
    for path, text in texts:
        found = []
        for m in VERSIONED.finditer(text):
            specs = [parse_spec(s, bools, f"{path}: {m.group(1)}") for s in SPEC.findall(m.group(2))]
            if specs and all(specs):
                found.append((m.group(1), specs))
        for m in UNVERSIONED.finditer(text):
            spec = parse_spec(m.group(2), bools, f"{path}: {m.group(1)}")
            if spec:
                found.append((m.group(1), [spec]))
        for key, specs in found:
            ident = key.split(".")[-1]
            name = names.get(ident, ident)
            gates.setdefault(name, []).append((path, specs))
    return gates


def at_version(specs, target):
    """The spec in effect at `target`: the newest with Version <= target (no Version: always)."""
    usable = [s for s in specs if s["version"] is None or version_key(s["version"]) <= version_key(target)]
    if not usable:
        return {"default": False, "stage": "PreAlpha", "locked": False}
    best = max(usable, key=lambda s: version_key(s["version"] or "0"))
    return {k: best[k] for k in ("default", "stage", "locked")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", required=True, help="Kubernetes minor version of the sources, e.g. 1.36")
    ap.add_argument(
        "--source", action="append", default=[], help="where an input file came from (a header line; repeatable)"
    )
    ap.add_argument("-o", "--output", help="Swift file to write (default: stdout)")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    gates = extract(args.files)
    if len(gates) < 10:
        sys.exit(f"only {len(gates)} gates found: are these the right files?")
    table = {}
    for name, defs in gates.items():
        effective = {repr(at_version(specs, args.version)) for _, specs in defs}
        if len(effective) > 1:
            sys.exit(f"{name}: conflicting specs in {[p for p, _ in defs]} (upstream's Add would fail)")
        table[name] = at_version(defs[0][1], args.version)
    # component-base's pseudo-gates, registered by every feature gate.
    for name, stage in (("AllAlpha", "Alpha"), ("AllBeta", "Beta")):
        table.setdefault(name, {"default": False, "stage": stage, "locked": False})

    lines = [
        "// Generated by Tools/feature-gates/extract.py; do not edit by hand (see that script to refresh).",
        f"// Kubernetes {args.version}: every gate kube-proxy registers, with its spec at that version.",
    ]
    lines += [f"// Source: {s}" for s in args.source]
    lines += [
        "",
        "extension FeatureGates {",
        "    /// The Kubernetes version whose feature-gate specs `specs` holds.",
        f'    static let kubernetesVersion = "{args.version}"',
        "",
        f"    /// {len(table)} gates, sorted by name.",
        "    static let specs: [Spec] = [",
    ]
    for name in sorted(table):
        s = table[name]
        lock = ", locked: true" if s["locked"] else ""
        lines.append(f'        Spec("{name}", {str(s["default"]).lower()}, .{STAGES[s["stage"]]}{lock}),')
    lines += ["    ]", "}", ""]
    out = "\n".join(lines)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
        print(f"{len(table)} gates written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(out)


if __name__ == "__main__":
    main()
