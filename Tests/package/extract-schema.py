#!/usr/bin/env python3
"""Writes Tests/package/k8s-schema.json: the Kubernetes API definitions that Config/kube-natd-daemonset.yaml's kinds
need (DaemonSet, ServiceAccount, ClusterRole, ClusterRoleBinding, ConfigMap and everything they reach), so that
Tests/package/manifest.sh can check the manifest offline.

Run once, by hand, when the bundled Kubernetes version should move:

    pip download --no-deps kubernetes==37.0.3 -d /tmp/k8s && cd /tmp/k8s && python3 -m zipfile -e kubernetes-*.whl x
    python3 Tests/package/extract-schema.py /tmp/k8s/x/kubernetes/client/models > Tests/package/k8s-schema.json

Where the definitions come from: upstream's api/openapi-spec/swagger.json is 3.2 MB and could not be brought onto
the machine this was written on; the official Python client (kubernetes on PyPI) is generated from that same OpenAPI
document of one Kubernetes release and carries, per definition, every property with its JSON name and type
(`openapi_types`, `attribute_map`) and which properties are required (annotations without Optional). The models are
read with `ast`, never imported. What the client's generator drops is the enums; ENUMS below re-types them (upstream's
`+enum` string constants, as swagger.json lists them) for the definitions reached here, as `Name.field`, and each
value is looked for in that field's description in the same client: values the description does not name are
reported on stderr, to be checked by hand.
"""
import ast
import json
import os
import re
import sys

ROOTS = {
    "apps/v1 DaemonSet": "V1DaemonSet",
    "v1 ServiceAccount": "V1ServiceAccount",
    "v1 ConfigMap": "V1ConfigMap",
    "rbac.authorization.k8s.io/v1 ClusterRole": "V1ClusterRole",
    "rbac.authorization.k8s.io/v1 ClusterRoleBinding": "V1ClusterRoleBinding",
}

# Enums as upstream's swagger.json lists them (its "enum" arrays), for the properties reached from ROOTS. Checked by
# hand for release-1.37 where the description does not name them (the script says which): HTTPGetAction.scheme
# (URIScheme: HTTP, HTTPS), HostPathVolumeSource.type (HostPathType), VolumeMount.mountPropagation
# (MountPropagationMode).
ENUMS = {
    "V1Container.imagePullPolicy": ["Always", "IfNotPresent", "Never"],
    "V1Container.terminationMessagePolicy": ["FallbackToLogsOnError", "File"],
    "V1ContainerPort.protocol": ["SCTP", "TCP", "UDP"],
    "V1DaemonSetUpdateStrategy.type": ["OnDelete", "RollingUpdate"],
    "V1HTTPGetAction.scheme": ["HTTP", "HTTPS"],
    "V1HostPathVolumeSource.type": [
        "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"],
    "V1PodSpec.dnsPolicy": ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    "V1PodSpec.preemptionPolicy": ["Never", "PreemptLowerPriority"],
    "V1PodSpec.restartPolicy": ["Always", "Never", "OnFailure"],
    "V1SeccompProfile.type": ["Localhost", "RuntimeDefault", "Unconfined"],
    "V1Toleration.effect": ["NoExecute", "NoSchedule", "PreferNoSchedule"],
    "V1Toleration.operator": ["Equal", "Exists", "Gt", "Lt"],
    "V1VolumeMount.mountPropagation": ["Bidirectional", "HostToContainer", "None"],
    "V1NodeSelectorRequirement.operator": ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"],
}


def read_models(directory):
    """Class name -> (openapi_types, attribute_map, required python names, descriptions by JSON name)."""
    models = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(directory, name), encoding="utf-8").read())
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            types, names, required, described = None, None, [], {}
            for st in cls.body:
                if not isinstance(st, ast.AnnAssign) or not isinstance(st.target, ast.Name):
                    continue
                field = st.target.id
                if field == "openapi_types":
                    types = ast.literal_eval(st.value)
                elif field == "attribute_map":
                    names = ast.literal_eval(st.value)
                else:
                    if not ast.unparse(st.annotation).startswith(("Optional[", "ClassVar[")):
                        required.append(field)
                    if isinstance(st.value, ast.Call):
                        for keyword in st.value.keywords:
                            if keyword.arg == "description" and isinstance(keyword.value, ast.Constant):
                                described[field] = keyword.value.value
            if types is not None and names is not None:
                described = {names[f]: text for f, text in described.items() if f in names}
                models[cls.name] = (types, names, required, described)
    return models


def type_spec(python_type, models, wanted):
    """The swagger-style schema of one client type string (`List[V1Container]`, `Dict[str, str]`, `object`...)."""
    m = re.fullmatch(r"List\[(.+)\]", python_type)
    if m:
        return {"type": "array", "items": type_spec(m.group(1), models, wanted)}
    m = re.fullmatch(r"Dict\[str, (.+)\]", python_type)
    if m:
        return {"type": "object", "additionalProperties": type_spec(m.group(1), models, wanted)}
    scalar = {
        "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
        "bool": {"type": "boolean"}, "datetime": {"type": "string", "format": "date-time"},
        "bytes": {"type": "string", "format": "byte"},
        # IntOrString, RawExtension and JSON: the client's generator types them all as object.
        "object": {"x-any": True},
    }
    if python_type in scalar:
        return scalar[python_type]
    if python_type not in models:
        sys.exit(f"extract-schema: type {python_type} has no model file")
    wanted.append(python_type)
    return {"$ref": python_type}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: extract-schema.py KUBERNETES_CLIENT_MODELS_DIR > Tests/package/k8s-schema.json")
    directory = sys.argv[1]
    header = open(os.path.join(directory, "v1_pod_spec.py"), encoding="utf-8").read()
    version = re.search(r"The version of the OpenAPI document: (\S+)", header).group(1)
    models = read_models(directory)
    definitions, wanted = {}, list(ROOTS.values())
    while wanted:
        name = wanted.pop()
        if name in definitions:
            continue
        types, names, required, _ = models[name]
        properties = {}
        for field, python_type in types.items():
            spec = type_spec(python_type, models, wanted)
            enum = ENUMS.get(f"{name}.{names[field]}")
            if enum:
                spec = dict(spec, enum=enum)
            properties[names[field]] = spec
        definitions[name] = {"properties": properties, "required": sorted(names[f] for f in required)}
    unused = [key for key in ENUMS if key.split(".")[0] not in definitions]
    if unused:
        sys.exit(f"extract-schema: ENUMS name definitions not reached: {unused}")
    for key, values in ENUMS.items():
        cls, field = key.split(".")
        if field not in definitions[cls]["properties"]:
            sys.exit(f"extract-schema: ENUMS names {key}, which the model does not have")
        description = models[cls][3].get(field, "")
        unnamed = [v for v in values if v and not re.search(rf"\b{v}\b", description)]
        if unnamed:
            print(f"extract-schema: {key}: the description does not name {unnamed}; check them by hand",
                  file=sys.stderr)
    json.dump({
        "source": f"Kubernetes OpenAPI {version}, through the generated Python client's models"
                  " (Tests/package/extract-schema.py); enums re-typed from upstream swagger.json",
        "roots": ROOTS,
        "definitions": dict(sorted(definitions.items())),
    }, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


main()
