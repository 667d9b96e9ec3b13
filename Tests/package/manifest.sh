#!/bin/bash
# Tests/package/manifest.sh BINARY: Config/kube-natd-daemonset.yaml against the bundled Kubernetes schema
# (Tests/package/k8s-schema.json, strict: unknown fields are errors), the manifest broken on purpose in each way
# the validator must catch, what the manifest must say to replace kube-proxy's DaemonSet, and its ConfigMap's
# config through `kube-natd --validate`. No cluster, no network. Needs python3 with PyYAML (python3-yaml).
# Prints "manifest: N passed, N failed, N skipped"; exits 1 on any failure.
set -u
cd "$(dirname "$0")/../.." || exit 2
BIN=${1:?usage: Tests/package/manifest.sh path/to/kube-natd}
BIN=$(realpath "$BIN")
MANIFEST=Config/kube-natd-daemonset.yaml
SCHEMA=Tests/package/k8s-schema.json
source Tests/kernel/lib/checks.sh
SKIP=0
work=$(mktemp -d /tmp/knat-manifest.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

validate() { python3 Tests/package/validate-manifest.py "$SCHEMA" "$1"; }

# The manifest as shipped: valid, and the validator says nothing.
check_valid() {
    local out
    out=$(validate "$MANIFEST" 2>&1) || { echo "$out"; return 1; }
    [ -z "$out" ] || { echo "unexpected output: $out"; return 1; }
}
check "the manifest passes strict schema validation" check_valid

# mutate NAME PYTHON: the manifest with one change (PYTHON edits `docs`, a list of the YAML documents) written to
# $work/NAME.yaml.
mutate() {
    python3 - "$MANIFEST" "$work/$1.yaml" "$2" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kind = {d["kind"]: d for d in docs}
ds, pod = kind["DaemonSet"], kind["DaemonSet"]["spec"]["template"]["spec"]
exec(sys.argv[3])
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
}

# rejects NAME PYTHON EXPECTED: the mutated manifest fails validation with a line containing EXPECTED.
rejects() {
    local name=$1 edit=$2 expected=$3 out rc
    mutate "$name" "$edit" || return 1
    out=$(validate "$work/$name.yaml" 2>&1); rc=$?
    if [ "$rc" -ne 1 ]; then echo "exit $rc, not 1: $out"; return 1; fi
    grep -qF -- "$expected" <<<"$out" || { echo "no line with '$expected' in: $out"; return 1; }
}
# The round trip through PyYAML alone changes nothing the validator sees.
round_trip() { mutate same 'pass' && validate "$work/same.yaml"; }
check "an unchanged round trip still passes" round_trip
check "unknown field in the container is rejected" rejects unknown-field \
    'pod["containers"][0]["imagePullPolicyy"] = "Always"' \
    "DaemonSet kube-system/kube-natd: spec.template.spec.containers[0].imagePullPolicyy: unknown field"
check "unknown top-level field is rejected" rejects unknown-top \
    'kind["ClusterRole"]["rule"] = kind["ClusterRole"]["rules"]' "ClusterRole kube-natd: rule: unknown field"
check "a string where a boolean belongs is rejected" rejects wrong-bool \
    'pod["hostNetwork"] = "true"' "spec.template.spec.hostNetwork: expected boolean, got string"
check "a string where an integer belongs is rejected" rejects wrong-int \
    'pod["containers"][0]["ports"][0]["containerPort"] = "10256"' \
    "spec.template.spec.containers[0].ports[0].containerPort: expected integer, got string"
check "a boolean where an integer belongs is rejected" rejects bool-int \
    'pod["containers"][0]["livenessProbe"]["periodSeconds"] = True' "periodSeconds: expected integer, got boolean"
check "a missing required field is rejected" rejects missing-name \
    'del pod["containers"][0]["name"]' "spec.template.spec.containers[0].name: required field missing"
check "a missing DaemonSet selector is rejected" rejects missing-selector \
    'del ds["spec"]["selector"]' "DaemonSet kube-system/kube-natd: spec.selector: required field missing"
check "a value outside an enum is rejected" rejects bad-enum \
    'pod["tolerations"][0]["operator"] = "Any"' "spec.template.spec.tolerations[0].operator: 'Any' is not one of"
check "an unknown update strategy is rejected" rejects bad-strategy \
    'ds["spec"]["updateStrategy"]["type"] = "Rolling"' "spec.updateStrategy.type: 'Rolling' is not one of"
check "an unknown field deep in a volume is rejected" rejects deep-unknown \
    'pod["volumes"][1]["hostPath"]["readOnly"] = True' "spec.template.spec.volumes[1].hostPath.readOnly: unknown field"
check "a kind outside the bundled schema is rejected" rejects old-api \
    'ds["apiVersion"] = "extensions/v1beta1"' "kind 'DaemonSet' is not one of the bundled kinds"

# What the manifest must say (RBAC = what Sources/KubeSource requests, probes, config, mounts).
contents() {
    python3 Tests/package/manifest-contents.py "$1" Sources "$work/config.conf"
}
contents_out=$(contents "$MANIFEST" 2>&1); contents_rc=$?
while IFS= read -r line; do
    case $line in
        "ok   "*) ok "${line#ok   }" ;;
        "FAIL "*) bad "${line#FAIL }" ;;
        *) bad "manifest-contents: $line" ;;
    esac
done <<<"$contents_out"
[ "$contents_rc" -eq 0 ] || bad "manifest-contents.py exited $contents_rc"

# The content checks catch a manifest that reads more or less than kube-natd, or loses host networking.
contents_fail() {
    local name=$1 edit=$2 expected=$3 out
    mutate "$name" "$edit" || return 1
    out=$(contents "$work/$name.yaml" 2>&1)
    grep -qF -- "FAIL $expected" <<<"$out" || { echo "no 'FAIL $expected' in: $out"; return 1; }
}
check "a ClusterRole without watch on EndpointSlices fails the contents check" contents_fail no-watch \
    'kind["ClusterRole"]["rules"][1]["verbs"] = ["list"]' "ClusterRole grants list/watch on what the source requests"
check "a ClusterRole that may create Events fails the contents check" contents_fail events \
    'kind["ClusterRole"]["rules"].append({"apiGroups": [""], "resources": ["events"], "verbs": ["create"]})' \
    "ClusterRole grants nothing else"
check "a pod resolving through cluster DNS fails the contents check" contents_fail cluster-dns \
    'pod["dnsPolicy"] = "ClusterFirstWithHostNet"' "names resolve through the node"
check "a pod outside the host network fails the contents check" contents_fail no-hostnet \
    'pod["hostNetwork"] = False' "hostNetwork"

# The ConfigMap's KubeProxyConfiguration is one kube-natd accepts.
check_config() {
    contents "$MANIFEST" >/dev/null
    [ -s "$work/config.conf" ] || { echo "no config.conf written"; return 1; }
    "$BIN" --validate --config "$work/config.conf"
}
check "kube-natd --validate accepts the ConfigMap's config.conf" check_config

echo "manifest: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
