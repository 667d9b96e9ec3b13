#!/usr/bin/env python3
"""Prints `nft -j list ruleset` (stdin) in a canonical line form for comparing two namespaces.

Handles and counter values are dropped; tables and chains are sorted by name (their order in the kernel's lists
is creation order, which says nothing about what the ruleset does); rules keep their order within a chain, and
every expression is printed whole. kube-natd's private rule userdata is not part of nft's JSON.
"""
import json
import sys


def scrub(value):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "handle":
                continue
            if k == "counter" and isinstance(v, dict):
                v = {"packets": 0, "bytes": 0}
            out[k] = scrub(v)
        return out
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


doc = json.load(sys.stdin)
tables, chains, rules, other = [], [], {}, []
for item in doc.get("nftables", []):
    if "metainfo" in item:
        continue
    if "table" in item:
        tables.append(scrub(item["table"]))
    elif "chain" in item:
        chains.append(scrub(item["chain"]))
    elif "rule" in item:
        r = scrub(item["rule"])
        rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    else:
        other.append(scrub(item))
for t in sorted(tables, key=lambda t: (t["family"], t["name"])):
    print("table", json.dumps(t, sort_keys=True))
for c in sorted(chains, key=lambda c: (c["family"], c["table"], c["name"])):
    print("chain", json.dumps(c, sort_keys=True))
    for i, r in enumerate(rules.get((c["family"], c["table"], c["name"]), [])):
        print("rule", i + 1, json.dumps(r, sort_keys=True))
for o in other:
    print("other", json.dumps(o, sort_keys=True))
