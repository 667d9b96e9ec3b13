print("kube-natd")
