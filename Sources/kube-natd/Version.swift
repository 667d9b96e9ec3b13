/// kube-natd's release version: what `--version` prints and what `make deb` names the package after
/// (the Makefile reads it from this line, so the two cannot disagree).
let kubeNatdVersion = "0.1.0"
