#!/usr/bin/env python3
"""kube-natd soak: the daemon against fake-apiserver under a seeded stream of changes and faults.

Runs inside the node namespace of Tests/kernel/lib/topology.sh (Tests/soak/run.sh sets it up): starts
fake-apiserver on 127.0.0.1 there, the daemon against it, then drives changes (endpoints scaled, readiness and
terminating flips, Services added, deleted, retyped, ports and policies changed, invalid updates) and faults
(watch cut, 410, apiserver restart, slow apiserver, the xtables lock held, rules flushed or a SEP chain deleted
behind kube-natd's back, SIGHUP). At checkpoints it stops the churn, waits for the daemon to settle and compares
the kernel's KUBE-* chains with the dry run of what the apiserver holds, where an object whose latest version is
invalid counts with its last valid version (kube-natd's last-good rule), and sends real traffic to a few Services.

    soak.py --bin DIR --prefix NS-PREFIX --backend libiptc|libnftnl|restore --seconds S --seed N --services N \
            --out FILE.json

Prints one line per checkpoint and a summary; writes the report as JSON; exits 1 when a target is missed.
"""
import argparse
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "..", "kernel", "lib", "probe.py")
SYNC_PERIOD = 5  # seconds: drift repairs and periodic syncs happen within this
BACKOFF_MAX = 60  # seconds: the longest wait of kube-natd's list/watch backoff (30 s cap with jitter 1.0)
API_PORT = 16443
METRICS_PORT = 10249
HEALTHZ_PORT = 10256

# The pods of lib/topology.sh, each serving TCP 8080; "remote" belongs to node-2.
# This node's Node (the daemon's hostnameOverride), with the topology's node address: kube-natd, as kube-proxy,
# waits for its Node to list a node IP before the first sync.
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.10.1"}]}}
PODS = {"pod-a": "10.244.1.10", "pod-b": "10.244.1.11", "pod-dns": "10.244.1.12", "pod-remote": "10.244.2.10"}


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def run(argv, input=None, timeout=300, check=True):
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(argv), p.returncode, p.stderr.strip()[:500]))
    return p.stdout


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


class Api:
    """fake-apiserver's control API, on 127.0.0.1 in this namespace."""

    def request(self, method, path, body=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", API_PORT, timeout=timeout)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            if r.status >= 300 and not (method == "DELETE" and r.status == 404):
                raise RuntimeError("%s %s: HTTP %d %s" % (method, path, r.status, data[:200]))
            return json.loads(data) if data else None
        finally:
            c.close()

    def put(self, objects):
        return self.request("PUT", "/control/objects", {"kind": "List", "apiVersion": "v1", "items": objects})

    def delete(self, kind, ns, name):
        self.request("DELETE", "/control/objects/%s/%s/%s" % (kind, ns, name))

    def up(self):
        try:
            self.request("GET", "/healthz", timeout=2)
            return True
        except OSError:
            return False


class Cluster:
    """What the apiserver holds (`served`, latest version of each object, valid or not) and what kube-natd must
    program (`good`: the last valid version of each Service, per the last-good rule). Services are plain dicts
    turned into Kubernetes JSON by `service_json` / `slice_json`."""

    def __init__(self, rng, n):
        self.rng = rng
        self.served = {}  # key -> service dict (may be invalid)
        self.good = {}  # key -> last valid service dict
        self.slices = {}  # key -> endpoint list [(ip, ready, serving, terminating, node)]
        self.next = 0
        self.node_ports = set()
        self.cluster_ips = set()
        self.probes = ["probe/web", "probe/solo", "probe/pair"]
        self.add_probe("web", "10.96.0.10", ["pod-a", "pod-b"])
        self.add_probe("solo", "10.96.0.11", ["pod-dns"])
        self.add_probe("pair", "10.96.0.12", ["pod-b", "pod-remote"])
        for _ in range(n):
            self.add_service(valid=True)

    # --- construction ---------------------------------------------------------------------------------------
    def add_probe(self, name, ip, pods):
        key = "probe/" + name
        svc = {"ns": "probe", "name": name, "type": "ClusterIP", "ip": ip, "port": 80, "target": 8080,
               "nodePort": 0, "etp": "Cluster", "itp": "Cluster", "affinity": False, "lb": None, "valid": True}
        self.served[key] = dict(svc)
        self.good[key] = dict(svc)
        self.slices[key] = [(PODS[p], True, True, False, "node-2" if p == "pod-remote" else "node-1") for p in pods]

    def fresh_ip(self):
        while True:
            i = self.rng.randrange(1, 65000)
            ip = "10.100.%d.%d" % (i // 254, i % 254 + 1)
            if ip not in self.cluster_ips:
                self.cluster_ips.add(ip)
                return ip

    def fresh_node_port(self):
        free = [p for p in range(30000, 32768) if p not in self.node_ports]
        if not free:
            return 0
        p = self.rng.choice(free)
        self.node_ports.add(p)
        return p

    def endpoints(self, count):
        eps = []
        for _ in range(count):
            i = self.rng.randrange(1, 60000)
            eps.append(("10.245.%d.%d" % (i // 250, i % 250 + 1), True, True, False,
                        self.rng.choice(["node-1", "node-2", "node-3"])))
        return eps

    def add_service(self, valid=True):
        self.next += 1
        key = "ns-%d/svc-%d" % (self.next % 40, self.next)
        kind = self.rng.choices(["ClusterIP", "NodePort", "LoadBalancer"], [75, 20, 5])[0]
        svc = {"ns": key.split("/")[0], "name": key.split("/")[1], "type": kind, "ip": self.fresh_ip(),
               "port": self.rng.choice([80, 443, 8080, 53]), "target": 8080, "nodePort": 0,
               "etp": "Cluster", "itp": "Cluster", "affinity": self.rng.random() < 0.05, "lb": None, "valid": valid}
        if kind != "ClusterIP":
            svc["nodePort"] = self.fresh_node_port()
            if svc["nodePort"] == 0:
                svc["type"] = "ClusterIP"
        if svc["type"] == "LoadBalancer":
            svc["lb"] = "192.0.2.%d" % self.rng.randrange(1, 255)
            svc["etp"] = self.rng.choice(["Cluster", "Local"])
        if not valid:
            svc["port"] = self.rng.choice([0, 70000])
        self.served[key] = svc
        if valid:
            self.good[key] = dict(svc)
        self.slices[key] = self.endpoints(self.rng.choice([0, 1, 2, 3, 3, 4]))
        return key

    # --- JSON ----------------------------------------------------------------------------------------------
    @staticmethod
    def service_json(s):
        port = {"name": "p", "protocol": "TCP", "port": s["port"], "targetPort": s["target"]}
        if s["nodePort"]:
            port["nodePort"] = s["nodePort"]
        spec = {"type": s["type"], "clusterIP": s["ip"], "clusterIPs": [s["ip"]], "ports": [port],
                "internalTrafficPolicy": s["itp"], "sessionAffinity": "ClientIP" if s["affinity"] else "None"}
        if s["type"] != "ClusterIP":
            spec["externalTrafficPolicy"] = s["etp"]
        obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": s["name"], "namespace": s["ns"]},
               "spec": spec}
        if s["type"] == "LoadBalancer" and s["lb"]:
            obj["status"] = {"loadBalancer": {"ingress": [{"ip": s["lb"]}]}}
        return obj

    @staticmethod
    def slice_json(key, eps, stamp=None):
        ns, name = key.split("/")
        meta = {"name": name + "-x1", "namespace": ns,
                "labels": {"kubernetes.io/service-name": name,
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}}
        if stamp:
            meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": stamp}
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta, "addressType": "IPv4",
                "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "nodeName": node,
                               "conditions": {"ready": r, "serving": sv, "terminating": t}}
                              for ip, r, sv, t, node in eps]}

    def all_objects(self):
        out = [NODE]
        for key, s in self.served.items():
            out.append(self.service_json(s))
            out.append(self.slice_json(key, self.slices[key]))
        return out

    def model(self):
        """What kube-natd must program: last valid Services, current slices."""
        items = []
        items.append(NODE)
        for key, s in sorted(self.good.items()):
            items.append(self.service_json(s))
        for key, eps in sorted(self.slices.items()):
            items.append(self.slice_json(key, eps))
        return {"apiVersion": "v1", "kind": "List", "items": items}


class Soak:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.api = Api()
        self.tmp = tempfile.mkdtemp(prefix="knat-soak.")
        self.node = a.prefix + "node"
        self.client = a.prefix + "client"
        self.legacy = a.backend != "libnftnl"
        self.report = {"backend": a.backend, "seed": a.seed, "seconds": a.seconds, "services": a.services,
                       "changes": {}, "faults": {}, "checkpoints": [], "divergences": 0, "probe_failures": 0,
                       "latency_ms": {}, "syncs": 0, "samples": [], "failures": [], "unsettled": 0,
                       "faults_without_trace": []}
        self.apiserver = None
        self.daemon = None
        self.samples_stop = threading.Event()
        self.pending = []  # (time, callable): delayed fault endings
        self.traces = []  # (label, callable returning None or why the fault left no trace): checked at a checkpoint
        # A private xtables lock for the daemon and the xtables-lock fault: never the host's /run/xtables.lock.
        self.lockfile = os.path.join(self.tmp, "xtables.lock")
        self.rv = 1

    # --- processes ----------------------------------------------------------------------------------------
    def start_apiserver(self, preload, start_rv):
        log_file = open(os.path.join(self.tmp, "apiserver.log"), "a")
        self.apiserver = subprocess.Popen(
            [os.path.join(self.a.bin, "fake-apiserver"), "--listen", "127.0.0.1:%d" % API_PORT,
             "--start-resource-version", str(start_rv), "--preload", preload, "--quiet"],
            stdout=log_file, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.api.up():
                return
            time.sleep(0.1)
        raise RuntimeError("fake-apiserver did not come up")

    def write_list(self, items, name):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
        return path

    def start_daemon(self):
        kc = os.path.join(self.tmp, "kubeconfig")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: soak\n  cluster: {server: 'http://127.0.0.1:%d'}\n"
                    "users:\n- name: soak\n  user: {}\ncontexts:\n- name: soak\n  context: {cluster: soak, user: soak}\n"
                    "current-context: soak\n" % API_PORT)
        cfg = os.path.join(self.tmp, "config.yaml")
        with open(cfg, "w") as f:
            f.write("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n"
                    "hostnameOverride: node-1\nclusterCIDR: 10.244.0.0/16\ndetectLocalMode: ClusterCIDR\n"
                    "healthzBindAddress: 127.0.0.1:%d\nmetricsBindAddress: 127.0.0.1:%d\n"
                    "clientConnection:\n  kubeconfig: %s\n"
                    "iptables:\n  syncPeriod: %ds\n  minSyncPeriod: 1s\n  localhostNodePorts: true\n"
                    "conntrack:\n  maxPerCore: 0\n" % (HEALTHZ_PORT, METRICS_PORT, kc, SYNC_PERIOD))
        self.config = cfg
        self.daemon_log = os.path.join(self.tmp, "daemon.log")
        self.daemon = subprocess.Popen(
            [os.path.join(self.a.bin, "kube-natd"), "--config", cfg, "--backend", self.a.backend, "-v", "4"],
            stdout=open(self.daemon_log, "w"), stderr=subprocess.STDOUT,
            env=dict(os.environ, XTABLES_LOCKFILE=self.lockfile))
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError("the daemon exited: " + open(self.daemon_log).read()[-2000:])
            if "first sync done" in open(self.daemon_log).read():
                return
            time.sleep(0.2)
        raise RuntimeError("no first sync within 300 s: " + open(self.daemon_log).read()[-2000:])

    def metrics(self):
        c = http.client.HTTPConnection("127.0.0.1", METRICS_PORT, timeout=10)
        try:
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
        finally:
            c.close()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def sample(self):
        pid = self.daemon.pid
        while not self.samples_stop.wait(2):
            try:
                rss = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % pid).read()).group(1))
                fds = len(os.listdir("/proc/%d/fd" % pid))
            except (OSError, AttributeError):
                continue
            self.report["samples"].append([round(time.time() - self.t0, 1), rss, fds])

    # --- changes ------------------------------------------------------------------------------------------
    def count(self, what, table="changes"):
        self.report[table][what] = self.report[table].get(what, 0) + 1

    def change(self):
        c, rng = self.cluster, self.rng
        op = rng.choices(["scale", "flip", "add", "delete", "retype", "port", "policy", "invalid", "probe"],
                         [30, 15, 8, 8, 5, 5, 8, 6, 10])[0]
        keys = [k for k in c.served if not k.startswith("probe/")]
        if op in ("add",) or not keys:
            key = c.add_service(valid=rng.random() > 0.1)
            self.api.put([c.service_json(c.served[key]), c.slice_json(key, c.slices[key], now_rfc3339())])
        elif op == "delete":
            key = rng.choice(keys)
            s = c.served.pop(key)
            c.good.pop(key, None)
            c.slices.pop(key, None)
            self.api.delete("Service", s["ns"], s["name"])
            self.api.delete("EndpointSlice", s["ns"], s["name"] + "-x1")
        elif op in ("scale", "flip"):
            key = rng.choice(keys)
            eps = c.slices[key]
            if op == "scale":
                eps = eps[:-1] if eps and rng.random() < 0.5 else eps + c.endpoints(1)
            elif eps:
                i = rng.randrange(len(eps))
                ip, r, sv, t, node = eps[i]
                eps = list(eps)
                eps[i] = rng.choice([(ip, not r, sv, t, node), (ip, False, True, True, node), (ip, True, True, False, node)])
            c.slices[key] = eps
            self.api.put([c.slice_json(key, eps, now_rfc3339())])
        elif op == "probe":
            key = rng.choice(c.probes)
            pods = rng.sample(sorted(PODS), rng.randrange(0, 3))
            c.slices[key] = [(PODS[p], True, True, False, "node-2" if p == "pod-remote" else "node-1") for p in pods]
            self.api.put([c.slice_json(key, c.slices[key], now_rfc3339())])
        else:
            key = rng.choice(keys)
            base = c.good.get(key, c.served[key])
            s = dict(base)
            s["valid"] = True
            if op == "retype":
                s["type"] = rng.choice(["ClusterIP", "NodePort", "LoadBalancer"])
                if s["type"] == "ClusterIP":
                    if s["nodePort"]:
                        c.node_ports.discard(s["nodePort"])
                    s["nodePort"], s["lb"], s["etp"] = 0, None, "Cluster"
                else:
                    if not s["nodePort"]:
                        s["nodePort"] = c.fresh_node_port()
                    if not s["nodePort"]:
                        s["type"] = "ClusterIP"
                    s["lb"] = "192.0.2.%d" % rng.randrange(1, 255) if s["type"] == "LoadBalancer" else None
                    if s["type"] == "NodePort":
                        s["etp"] = rng.choice(["Cluster", "Local"])
            elif op == "port":
                s["port"] = rng.choice([80, 81, 443, 8080, 9090])
            elif op == "policy":
                field = rng.choice(["itp", "affinity"] + (["etp"] if s["type"] != "ClusterIP" else []))
                s[field] = (not s[field]) if field == "affinity" else ("Local" if s[field] == "Cluster" else "Cluster")
            elif op == "invalid":
                s["port"] = rng.choice([0, 70000])
                s["valid"] = False
            c.served[key] = s
            if s["valid"]:
                c.good[key] = dict(s)
            self.api.put([c.service_json(s)])
        self.count(op)

    # --- faults -------------------------------------------------------------------------------------------
    def ipt(self, *args):
        tool = "iptables-legacy" if self.legacy else "iptables-nft"
        return run([tool] + list(args), check=False)

    @staticmethod
    def succeeds(argv):
        return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0

    def ipt_ok(self, *args):
        # The daemon's private xtables lock, waited for: a legacy command racing the daemon's commit fails with
        # EAGAIN (the table changed under it) and the fault would leave no trace.
        argv = ["iptables-legacy", "-w", "10"] if self.legacy else ["iptables-nft"]
        return subprocess.run(argv + list(args), capture_output=True, timeout=60,
                              env=dict(os.environ, XTABLES_LOCKFILE=self.lockfile)).returncode == 0

    def log_size(self):
        return os.path.getsize(self.daemon_log)

    def logged_since(self, offset, text):
        with open(self.daemon_log, errors="replace") as f:
            f.seek(offset)
            return text in f.read()

    def trace(self, label, check):
        self.traces.append((label, check))

    def expect_log(self, label, offset, text):
        """The fault took effect when the daemon logs `text` after `offset` (checked at the next checkpoint)."""
        self.trace(label, lambda: None if self.logged_since(offset, text) else "the daemon never logged %r" % text)

    def fault(self, kind):
        log("fault: " + kind)
        label = "%s at t+%ds" % (kind, int(time.time() - self.t0))
        offset = self.log_size()
        if kind == "watch-cut":
            cut = self.api.request("POST", "/control/cut-watches").get("cut", 0)
            self.trace(label, lambda: None if cut >= 1 else "no watch was open to cut")
        elif kind == "410":
            # A change first: its kind's watch moves to the new resourceVersion, the others stay older until their
            # next bookmark (every second), so the compaction leaves at least one watch resuming from before it.
            self.change()
            self.api.request("POST", "/control/compact")
            cut = self.api.request("POST", "/control/cut-watches").get("cut", 0)
            self.trace(label, lambda: None if cut >= 1 else "no watch was open to cut")
            self.expect_log(label, offset, "expired (410 Gone); relisting")
        elif kind == "apiserver-restart":
            state = self.api.request("GET", "/control/state", timeout=60)
            rv = int(state["metadata"]["resourceVersion"])
            self.apiserver.kill()
            self.apiserver.wait()
            path = self.write_list(state["items"], "state.json")
            self.start_apiserver(path, rv + 100000)
            # the daemon's connections fail, and it lists again from the last resourceVersion it saw, as client-go's
            # reflector does (the restarted apiserver answers that list: its history starts above it)
            self.expect_log(label, offset, "recovered after")
        elif kind == "slow-apiserver":
            self.api.request("POST", "/control/latency?ms=1500")
            began = time.time()
            self.api.request("GET", "/api/v1/services?limit=1", timeout=30)
            took = time.time() - began
            self.trace(label, lambda: None if took >= 1.4 else "a list answered in %.2f s with 1500 ms latency set" % took)
            self.pending.append((time.time() + 8, lambda: self.api.request("POST", "/control/latency?ms=0")))
        elif kind == "xtables-lock":
            held = os.path.join(self.tmp, "lock.held.%d" % offset)
            release = os.path.join(self.tmp, "lock.release.%d" % offset)
            holder = subprocess.Popen(["flock", self.lockfile, "sh", "-c",
                                       'touch "$1"; i=0; while [ ! -e "$2" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done',
                                       "_", held, release])
            for _ in range(100):  # the holder says when it holds the lock
                if os.path.exists(held):
                    break
                time.sleep(0.05)
            took_effect = os.path.exists(held)
            self.trace(label, lambda: None if took_effect else "the holder never took the xtables lock")

            def let_go(holder=holder, release=release):
                open(release, "w").close()
                holder.wait()
            self.pending.append((time.time() + 3, let_go))
        elif kind in ("flush-services", "delete-sep"):
            if kind == "flush-services":
                if self.legacy:
                    done = self.ipt_ok("-t", "nat", "-F", "KUBE-SERVICES")
                else:
                    done = self.succeeds(["nft", "flush", "chain", "ip", "nat", "KUBE-SERVICES"])
            else:
                done = False
                save = run(["iptables-legacy-save" if self.legacy else "iptables-nft-save", "-t", "nat"], check=False)
                for line in (save or "").splitlines():
                    m = re.match(r"-A (KUBE-SVC-\S+) .*-j (KUBE-SEP-\S+)$", line)
                    if m:
                        # shlex: the rule's comment is quoted and holds spaces ("ns/name:port -> ip:port")
                        done = all(self.ipt_ok("-t", "nat", *args) for args in
                                   (["-D"] + shlex.split(line)[1:], ["-F", m.group(2)], ["-X", m.group(2)]))
                        break
            # The fault took effect when the rules were broken; the next checkpoint's convergence shows the repair.
            # (Which sync repairs it, and so whether "rules changed behind kube-natd's back" is logged, depends on
            # timing: a partial sync that rewrites the broken chain repairs it without a drift check.)
            self.trace(label, lambda: None if done else "the rules could not be broken")
        elif kind == "sighup":
            os.kill(self.daemon.pid, signal.SIGHUP)
            self.expect_log(label, offset, "SIGHUP: reading the source again")
        self.count(kind, "faults")

    def check_traces(self):
        """Every fault since the last checkpoint left its trace; one that did not is a failure."""
        for label, check in self.traces:
            why = check()
            if why:
                self.report["faults_without_trace"].append("%s: %s" % (label, why))
                log("fault %s left no trace: %s" % (label, why))
        self.traces = []

    # --- checkpoints --------------------------------------------------------------------------------------
    def settle(self, since):
        """Waits (bounded) until no change is pending and a sync finished after `since`."""
        deadline = time.time() + 120
        while time.time() < deadline:
            m = self.metrics()
            pending = m.get("kubeproxy_sync_proxy_rules_endpoint_changes_pending", 0) + \
                m.get("kubeproxy_sync_proxy_rules_service_changes_pending", 0)
            last = m.get('kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}', 0)
            if pending == 0 and last > since:
                return True
            time.sleep(0.5)
        return False

    @staticmethod
    def normalize(save):
        """KUBE-* chains (canaries aside) with their rules in order, and the jumps into them from base chains."""
        out, table = {}, None
        for line in save.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-") and "CANARY" not in line:
                out.setdefault((table, line.split()[0][1:]), [])
            elif line.startswith("-A "):
                chain = line.split()[1]
                if chain.startswith("KUBE-") and "CANARY" not in chain:
                    out.setdefault((table, chain), []).append(line)
                elif " -j KUBE-" in line:
                    out.setdefault((table, chain), []).append(line)
        return out

    def kernel_state(self):
        return self.normalize(run(["iptables-legacy-save" if self.legacy else "iptables-nft-save"]))

    def expected_state(self):
        model = os.path.join(self.tmp, "model.json")
        with open(model, "w") as f:
            json.dump(self.cluster.model(), f)
        # The kernel side compared is the IPv4 tables (iptables-*-save), so the dry run prints IPv4 only.
        text = run([os.path.join(self.a.bin, "kube-natd"), "--config", self.config, "--source", model, "--dry-run",
                    "--ip-family", "ipv4"])
        scratch = self.a.prefix + "scratch"
        run(["ip", "netns", "add", scratch])
        try:
            # The rules match kube-proxy's nfacct objects, which the daemon created in its own namespace.
            for name in ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"):
                run(["ip", "netns", "exec", scratch, "python3",
                     os.path.join(HERE, "..", "kernel", "nfacct-add.py"), name])
            run(["ip", "netns", "exec", scratch, "iptables-legacy-restore", "--noflush"], input=text)
            return self.normalize(run(["ip", "netns", "exec", scratch, "iptables-legacy-save"]))
        finally:
            run(["ip", "netns", "del", scratch], check=False)

    def probe(self):
        """Each probe Service answers from exactly its ready endpoints, or is refused without any."""
        failures = []
        for key in self.cluster.probes:
            s = self.cluster.good[key]
            want = {p for p, ip in PODS.items() for e in self.cluster.slices[key] if e[0] == ip and e[1]}
            out = run(["ip", "netns", "exec", self.client, "python3", PROBE, "tcp", s["ip"], "80", "12", "1.5"],
                      check=False, timeout=60)
            got = [l.split()[0] for l in out.splitlines() if l.strip()]
            if want:
                bad = [g for g in got if g not in want]
                if bad or len(got) != 12:
                    failures.append("%s: want %s, got %s" % (key, sorted(want), got))
            elif any(g.startswith("pod-") for g in got):
                failures.append("%s: no endpoints, yet answered: %s" % (key, got))
        return failures

    def checkpoint(self, label):
        since = time.time()
        settled = self.settle(since)
        # Repairs of drift happen within a syncPeriod: a difference counts only if it outlasts three of them, plus
        # the reflector's longest backoff (client-go's: 30 s cap, jitter 1.0, so up to 60 s; after the faults'
        # errors in quick succession a list may legitimately wait that long before it is retried).
        deadline = time.time() + 3 * SYNC_PERIOD + 10 + BACKOFF_MAX
        expected = self.expected_state()
        while True:
            have = self.kernel_state()
            differing = sorted(k for k in set(have) | set(expected) if have.get(k) != expected.get(k))
            if not differing or time.time() > deadline:
                break
            time.sleep(1)
        probes = self.probe()
        self.check_traces()
        if not settled:
            self.report["unsettled"] += 1
        cp = {"label": label, "t": round(time.time() - self.t0, 1), "settled": settled, "chains": len(expected),
              "divergent_chains": len(differing), "probe_failures": probes}
        if differing:
            self.report["divergences"] += 1
            details = []
            for k in differing[:5]:
                details.append({"chain": "%s %s" % k, "kernel": have.get(k, ["<missing>"])[:4],
                                "expected": expected.get(k, ["<missing>"])[:4]})
            cp["details"] = details
        if probes:
            self.report["probe_failures"] += len(probes)
        self.report["checkpoints"].append(cp)
        log("checkpoint %s: %d chains, %d divergent, probes %s%s" % (
            label, len(expected), len(differing), "ok" if not probes else "FAILED " + "; ".join(probes),
            "" if settled else " (did not settle)"))
        for d in cp.get("details", []):
            log("  %s: kernel %s / expected %s" % (d["chain"], d["kernel"][:2], d["expected"][:2]))

    # --- the run ------------------------------------------------------------------------------------------
    def main(self):
        a = self.a
        self.cluster = Cluster(self.rng, a.services)
        preload = self.write_list(self.cluster.all_objects(), "initial.json")
        self.start_apiserver(preload, 1)
        self.t0 = time.time()
        self.start_daemon()
        pid = self.daemon.pid
        time.sleep(2)
        self.rss_first = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % pid).read()).group(1))
        self.fd_first = len(os.listdir("/proc/%d/fd" % pid))
        log("%s: %d Services, first sync done; RSS %d kB, %d fds" % (a.backend, len(self.cluster.served),
                                                                   self.rss_first, self.fd_first))
        sampler = threading.Thread(target=self.sample, daemon=True)
        sampler.start()
        self.checkpoint("start")

        faults = ["watch-cut", "410", "apiserver-restart", "slow-apiserver", "xtables-lock", "flush-services",
                  "delete-sep", "sighup"]
        self.rng.shuffle(faults)
        n_faults = max(len(faults), int(a.seconds // 15))
        fault_at = [a.seconds * (i + 1) / (n_faults + 1) for i in range(n_faults)]
        n_checkpoints = max(1, int(a.seconds // 60))
        checkpoint_at = [a.seconds * (i + 1) / (n_checkpoints + 1) for i in range(n_checkpoints)]
        start = time.time()
        paused = 0.0  # time spent in checkpoints: the schedule counts churn time only
        fi = ci = 0
        interval = 1.0 / a.rate
        while time.time() - start - paused < a.seconds:
            elapsed = time.time() - start - paused
            for when, done in [p for p in self.pending if p[0] <= time.time()]:
                done()
                self.pending.remove((when, done))
            if fi < len(fault_at) and elapsed >= fault_at[fi]:
                self.fault(faults[fi % len(faults)])
                fi += 1
            if ci < len(checkpoint_at) and elapsed >= checkpoint_at[ci]:
                for _, done in self.pending:
                    done()
                self.pending = []
                began = time.time()
                self.checkpoint("t+%ds" % int(elapsed))
                paused += time.time() - began
                ci += 1
                continue
            try:
                self.change()
            except (RuntimeError, OSError) as e:
                # The apiserver may be restarting or slow: the change is retried as another one later.
                log("change not sent: %s" % e)
            time.sleep(interval)
        for _, done in self.pending:
            done()
        self.pending = []
        self.checkpoint("end")
        self.samples_stop.set()
        sampler.join()
        self.finish(pid)

    def finish(self, pid):
        r = self.report
        alive = self.daemon.poll() is None and self.daemon.pid == pid
        text = open(self.daemon_log).read()
        r["syncs"] = len(re.findall(r"synced IPv4", text))
        lat = sorted(float(x) for m in re.findall(r"network programming IPv4: \d+ endpoint changes, ms: ([0-9. ]+)", text)
                     for x in m.split())
        if lat:
            r["latency_ms"] = {"count": len(lat), "p50": lat[len(lat) // 2], "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                               "max": lat[-1]}
        rss_end = r["samples"][-1][1] if r["samples"] else self.rss_first
        fd_end = r["samples"][-1][2] if r["samples"] else self.fd_first
        r["rss_kb"] = {"after_first_sync": self.rss_first, "end": rss_end,
                       "max": max([s[1] for s in r["samples"]] or [rss_end])}
        r["fds"] = {"after_first_sync": self.fd_first, "end": fd_end, "max": max([s[2] for s in r["samples"]] or [fd_end])}
        r["daemon_restarts"] = 0 if alive else 1
        r["changes_applied"] = sum(r["changes"].values())
        if r["divergences"]:
            r["failures"].append("%d checkpoint(s) diverged" % r["divergences"])
        if r["probe_failures"]:
            r["failures"].append("%d probe failure(s)" % r["probe_failures"])
        if r["unsettled"]:
            r["failures"].append("%d checkpoint(s) did not settle (changes still pending, or no sync, after 120 s)"
                                 % r["unsettled"])
        if r["faults_without_trace"]:
            r["failures"].append("%d fault(s) left no trace: %s" % (len(r["faults_without_trace"]),
                                                                   "; ".join(r["faults_without_trace"][:5])))
        if not alive:
            r["failures"].append("the daemon did not survive (it exited or was restarted)")
        if rss_end > self.rss_first * 1.10:
            r["failures"].append("RSS grew from %d kB to %d kB (> 10%%)" % (self.rss_first, rss_end))
        if fd_end > self.fd_first + 2:
            r["failures"].append("open fds grew from %d to %d" % (self.fd_first, fd_end))
        if "invalid" in r["changes"] and "kubenatd_invalid_objects_total" not in text and \
                "invalid update ignored" not in text and "no last good version" not in text:
            r["failures"].append("invalid updates were sent but none was logged")
        r["passed"] = not r["failures"]
        if alive:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        self.apiserver.kill()
        with open(self.a.out, "w") as f:
            json.dump(r, f, indent=1)
        if r["passed"]:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log("logs kept in %s" % self.tmp)
        log("%s: %d changes (%s), faults %s, %d syncs, %d checkpoints, %d divergent, latency %s, RSS %d -> %d kB, "
            "fds %d -> %d: %s" % (r["backend"], r["changes_applied"], r["changes"], r["faults"], r["syncs"],
                                  len(r["checkpoints"]), r["divergences"], r["latency_ms"] or "none",
                                  self.rss_first, rss_end, self.fd_first, fd_end,
                                  "PASSED" if r["passed"] else "FAILED: " + "; ".join(r["failures"])))
        return r["passed"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--backend", default="libiptc")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--rate", type=float, default=4.0, help="changes per second")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    s = Soak(a)
    try:
        s.main()
    except Exception as e:  # the report says what stopped the run
        s.report["failures"].append("soak stopped: %s" % e)
        s.report["passed"] = False
        with open(a.out, "w") as f:
            json.dump(s.report, f, indent=1)
        log("FAILED: %s" % e)
        for proc in (s.daemon, s.apiserver):
            if proc and proc.poll() is None:
                proc.kill()
        return 1
    return 0 if s.report.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
