#!/usr/bin/env python3
"""manifest-contents.py MANIFEST SOURCES_DIR CONFIG_OUT: what the DaemonSet manifest must say to replace kube-proxy's,
one `ok NAME` or `FAIL NAME: why` line per check. The ClusterRole is compared with the API paths the apiserver
source actually requests (read from SOURCES_DIR/KubeSource), so a new collection there without its RBAC rule fails
here. Writes the ConfigMap's config.conf to CONFIG_OUT for the caller to give to `kube-natd --validate`."""
import os
import re
import sys

import yaml

manifest, sources, config_out = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(manifest, encoding="utf-8")) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def report(name, ok, why=""):
    print(f"ok   {name}" if ok else f"FAIL {name}: {why}")


def one(kind):
    found = by_kind.get(kind, [])
    report(f"exactly one {kind}", len(found) == 1, f"found {len(found)}")
    return found[0] if found else {}


sa, role, binding, cm, ds = (one(k) for k in
                             ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"))

# RBAC: every collection the source lists/watches, and nothing else.
paths = set()
for root, _, files in os.walk(os.path.join(sources, "KubeSource")):
    for f in files:
        if f.endswith(".swift"):
            text = open(os.path.join(root, f), encoding="utf-8").read()
            paths.update(re.findall(r'"(/apis?/[a-z0-9./-]+)"', text))
wanted = set()
for p in paths:
    m = re.fullmatch(r"/api/v1/([a-z]+)", p) or re.fullmatch(r"/apis/([a-z0-9.-]+)/v[0-9a-z]+/([a-z]+)", p)
    if m:
        group, resource = ("", m.group(1)) if p.startswith("/api/") else (m.group(1), m.group(2))
        wanted.update((group, resource, verb) for verb in ("list", "watch"))
report("the source requests collections (paths found)", len(wanted) >= 6, f"paths {sorted(paths)}")
granted = {(g, r, v) for rule in role.get("rules", []) for g in rule.get("apiGroups", [])
           for r in rule.get("resources", []) for v in rule.get("verbs", [])}
report("ClusterRole grants list/watch on what the source requests", wanted <= granted,
       f"missing {sorted(wanted - granted)}")
report("ClusterRole grants nothing else", granted <= wanted, f"extra {sorted(granted - wanted)}")
ref = binding.get("roleRef", {})
subjects = binding.get("subjects", [])
report("ClusterRoleBinding binds the ClusterRole to the ServiceAccount",
       ref.get("kind") == "ClusterRole" and ref.get("name") == role.get("metadata", {}).get("name")
       and any(s.get("kind") == "ServiceAccount" and s.get("name") == sa["metadata"]["name"]
               and s.get("namespace") == sa["metadata"]["namespace"] for s in subjects),
       f"roleRef {ref}, subjects {subjects}")

# The DaemonSet.
spec = ds.get("spec", {})
pod = spec.get("template", {}).get("spec", {})
containers = pod.get("containers", [])
c = containers[0] if containers else {}
report("one container", len(containers) == 1, f"{len(containers)} containers")
report("updateStrategy RollingUpdate", spec.get("updateStrategy", {}).get("type") == "RollingUpdate",
       f"{spec.get('updateStrategy')}")
report("selector matches the pod labels",
       spec.get("selector", {}).get("matchLabels", {}).items()
       <= spec.get("template", {}).get("metadata", {}).get("labels", {}).items(), "")
report("hostNetwork", pod.get("hostNetwork") is True, f"{pod.get('hostNetwork')}")
report("names resolve through the node, not through cluster DNS (a Service)", pod.get("dnsPolicy") == "Default",
       f"dnsPolicy {pod.get('dnsPolicy')}")
report("priorityClassName system-node-critical", pod.get("priorityClassName") == "system-node-critical",
       f"{pod.get('priorityClassName')}")
report("tolerates every taint", {"operator": "Exists"} in pod.get("tolerations", []), f"{pod.get('tolerations')}")
report("runs as the ServiceAccount", pod.get("serviceAccountName") == sa["metadata"]["name"]
       and ds["metadata"]["namespace"] == sa["metadata"]["namespace"], f"{pod.get('serviceAccountName')}")
report("privileged (sysctls need a writable /proc/sys)", c.get("securityContext", {}).get("privileged") is True,
       f"{c.get('securityContext')}")

# Config from the ConfigMap: --config names a file in the ConfigMap's mount.
args = c.get("command", []) + c.get("args", [])
config_args = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
volumes = {v["name"]: v for v in pod.get("volumes", [])}
config_path = config_args[0] if config_args else ""
config_volume = next((name for name, v in volumes.items()
                      if v.get("configMap", {}).get("name") == cm["metadata"]["name"]), None)
mount_path = mounts.get(config_volume, {}).get("mountPath", "/nonexistent")
key = os.path.relpath(config_path, mount_path) if config_path else ""
report("--config is a key of the mounted ConfigMap", key in cm.get("data", {}),
       f"--config {config_path!r}, ConfigMap mounted at {mount_path}, keys {sorted(cm.get('data', {}))}")
report("--hostname-override from the node name",
       "--hostname-override=$(NODE_NAME)" in args
       and any(e.get("name") == "NODE_NAME" and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
               == "spec.nodeName" for e in c.get("env", [])), f"{args}")
config = yaml.safe_load(cm.get("data", {}).get(key, "")) or {}
report("config is a KubeProxyConfiguration in iptables mode",
       config.get("kind") == "KubeProxyConfiguration" and config.get("mode") == "iptables", f"{config.get('mode')}")
kubeconfig = config.get("clientConnection", {}).get("kubeconfig", "")
report("the config's kubeconfig is in the ConfigMap",
       os.path.relpath(kubeconfig, mount_path) in cm.get("data", {}), f"{kubeconfig!r}")
with open(config_out, "w", encoding="utf-8") as out:
    out.write(cm.get("data", {}).get(key, ""))

# Probes on the health server's port.
port = int(str(config.get("healthzBindAddress", ":10256")).rsplit(":", 1)[1])
for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/healthz")):
    get = c.get(probe, {}).get("httpGet", {})
    report(f"{probe} on {path} at the healthz port", get.get("path") == path and get.get("port") == port,
           f"{get}, healthz port {port}")

# The node's files kube-natd shares.
for name, path, read_only in (("xtables lock", "/run/xtables.lock", False), ("kernel modules", "/lib/modules", True)):
    mount = next((m for m in mounts.values() if m.get("mountPath") == path), None)
    host = volumes.get(mount["name"], {}).get("hostPath", {}).get("path") if mount else None
    report(f"{name} mounted from the host", host == path and bool(mount.get("readOnly")) == read_only,
           f"mount {mount}, hostPath {host}")
