"""Checks on deploy/ that need no cluster and no engine, and the sidecar manifest's podman form.

  manifests.py check ROOT OUT_DIR   field checks on compose.yaml and kubernetes/*.yaml; writes every
                                    shipped Portcullis config to OUT_DIR/<name>.toml for
                                    `portcullis check` (prints "name<TAB>path" per config)
  manifests.py config MANIFEST NAME  prints the portcullis.toml of ConfigMap NAME
  manifests.py podman SIDECAR PORT SECRET OUT_YAML OUT_SECRET_JSON
                                    the sidecar manifest as `podman play kube` (4.3) runs it here
Exit 1 with one line per problem.
"""
import base64
import json
import os
import sys

import yaml

problems = []


def problem(msg):
    problems.append(msg)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def containers(doc):
    spec = doc["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def port_names(c):
    return {p.get("name"): p["containerPort"] for p in c.get("ports", [])}


def check_probes(where, c):
    for kind in ("livenessProbe", "readinessProbe"):
        probe = c.get(kind)
        if not probe:
            problem(f"{where}: container portcullis has no {kind}")
            continue
        if "exec" in probe:
            cmd = probe["exec"]["command"]
            if cmd[:2] != ["/usr/local/bin/portcullis", "healthcheck"] or ":9901/" not in " ".join(cmd):
                problem(f"{where}: {kind} exec must run portcullis healthcheck against :9901, got {cmd}")
        elif "httpGet" in probe:
            port = probe["httpGet"]["port"]
            if port not in ("admin", 9901):
                problem(f"{where}: {kind} must target the admin port, got {port!r}")
        else:
            problem(f"{where}: {kind} is neither exec nor httpGet")


def check_service_targets_portcullis(where, svc, pod_containers):
    portcullis = pod_containers.get("portcullis")
    names = port_names(portcullis) if portcullis else {}
    for p in svc["spec"]["ports"]:
        t = p.get("targetPort", p["port"])
        if t not in ("http", 8080) or names.get("http") != 8080:
            problem(f"{where}: Service {svc['metadata']['name']} targets {t!r}, not Portcullis's http port 8080")
        for name, c in pod_containers.items():
            if name == "portcullis":
                continue
            if t in port_names(c) or t in port_names(c).values() or t == 8000:
                problem(f"{where}: Service targets the app container {name}'s port {t!r}")
        if t in ("admin", 9901):
            problem(f"{where}: Service exposes the admin port")


def configs_from(where, docs, out_dir, prefix):
    out = []
    for d in docs:
        if d["kind"] == "ConfigMap" and "portcullis.toml" in d.get("data", {}):
            path = os.path.join(out_dir, f"{prefix}-{d['metadata']['name']}.toml")
            with open(path, "w") as f:
                f.write(d["data"]["portcullis.toml"])
            out.append((f"{where} ConfigMap {d['metadata']['name']}", path))
    if not out:
        problem(f"{where}: no ConfigMap with portcullis.toml")
    return out


def check(root, out_dir):
    configs = []
    kdir = os.path.join(root, "deploy", "kubernetes")

    kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
    for r in kust.get("resources", []):
        if not os.path.isfile(os.path.join(kdir, r)):
            problem(f"kustomization.yaml: resource {r} does not exist")

    # Sidecar: one pod holds the app and Portcullis; the Service reaches Portcullis only.
    where = "kubernetes/sidecar.yaml"
    docs = load_all(os.path.join(kdir, "sidecar.yaml"))
    kinds = {d["kind"] for d in docs}
    for k in ("ConfigMap", "Secret", "Deployment", "Service"):
        if k not in kinds:
            problem(f"{where}: no {k}")
    deps = [d for d in docs if d["kind"] == "Deployment"]
    for dep in deps:
        cs = containers(dep)
        if "portcullis" not in cs or len(cs) < 2:
            problem(f"{where}: the pod must hold the app and a container named portcullis, has {sorted(cs)}")
            continue
        check_probes(where, cs["portcullis"])
        env = {e["name"]: e for e in cs["portcullis"].get("env", [])}
        ref = env.get("PORTCULLIS_SESSION_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            problem(f"{where}: PORTCULLIS_SESSION_SECRET must come from a Secret")
        for svc in (d for d in docs if d["kind"] == "Service"):
            sel = svc["spec"]["selector"]
            labels = dep["spec"]["template"]["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in sel.items()):
                check_service_targets_portcullis(where, svc, cs)
    configs += configs_from(where, docs, out_dir, "sidecar")

    # Standalone: several replicas sharing Redis and PostgreSQL.
    where = "kubernetes/standalone.yaml"
    docs = load_all(os.path.join(kdir, "standalone.yaml"))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    dep = by.get(("Deployment", "portcullis"))
    if not dep:
        problem(f"{where}: no Deployment named portcullis")
    else:
        if dep["spec"].get("replicas", 1) < 2:
            problem(f"{where}: the portcullis Deployment must have several replicas")
        cs = containers(dep)
        check_probes(where, cs["portcullis"])
        svc = by.get(("Service", "portcullis"))
        if not svc:
            problem(f"{where}: no Service named portcullis")
        else:
            check_service_targets_portcullis(where, svc, cs)
    cfg = configs_from(where, docs, out_dir, "standalone")
    configs += cfg
    for _, path in cfg:
        text = open(path).read()
        for needle in ('store = "redis"', "redis_url", 'database = "postgres://', "signing_key_file", "secrets = ["):
            if needle not in text:
                problem(f"{where}: the shared config lacks {needle}")
    for name in ("portcullis-redis", "portcullis-postgres"):
        if ("Service", name) not in by:
            problem(f"{where}: no Service {name}")

    # compose.yaml: Portcullis + a sample upstream; redis and postgres behind profiles.
    where = "compose.yaml"
    compose = yaml.safe_load(open(os.path.join(root, "deploy", "compose.yaml")))
    svcs = compose.get("services", {})
    for name in ("portcullis", "app"):
        if name not in svcs:
            problem(f"{where}: no service {name}")
    for name, profile in (("redis", "redis"), ("postgres", "postgres")):
        if profile not in svcs.get(name, {}).get("profiles", []):
            problem(f"{where}: service {name} must be in profile {profile}")
    pc = svcs.get("portcullis", {})
    if any("9901" in str(p) for p in pc.get("ports", [])):
        problem(f"{where}: the admin port must not be published")
    if "ports" in svcs.get("app", {}):
        problem(f"{where}: the app must be reachable only through Portcullis (no ports)")
    mounts = [v for v in pc.get("volumes", []) if v.endswith(":/etc/portcullis/portcullis.toml:ro")]
    if not mounts:
        problem(f"{where}: the config is not mounted at /etc/portcullis/portcullis.toml")
    for toml in ("portcullis.toml", "portcullis.shared.toml"):
        path = os.path.join(root, "deploy", toml)
        if os.path.isfile(path):
            configs.append((f"deploy/{toml}", path))
        else:
            problem(f"{where}: deploy/{toml} is missing")

    for name, path in configs:
        print(f"{name}\t{path}")


def podman(sidecar, port, secret, out_yaml, out_secret):
    """Podman 4.3 specifics, each a difference of podman from Kubernetes, not of the manifest:
    a Secret document is stored unparsed (so secretKeyRef fails): it becomes a podman secret in
    the JSON form podman reads ({key: base64}); images are the locally built ones; the
    Portcullis port gets a loopback hostPort (a Service cannot run here); public_url is the
    test origin, and a loopback listener on that port lets the pod reach its own pool (the pool
    is discovered through public_url)."""
    port = int(port)
    out = []
    for d in load_all(sidecar):
        k = d["kind"]
        if k == "Secret":
            data = {key: val.encode() for key, val in d.get("stringData", {}).items()}
            data.update({key: base64.b64decode(val) for key, val in d.get("data", {}).items()})
            data["session-secret"] = secret.encode()
            with open(out_secret, "w") as f:
                json.dump({key: base64.b64encode(v).decode() for key, v in data.items()}, f)
            continue
        if k == "Service":
            continue
        if k == "ConfigMap":
            t = d["data"]["portcullis.toml"]
            for old, new in (
                ('public_url = "https://app.example.com"', f'public_url = "http://127.0.0.1:{port}"'),
                ('listen = ["0.0.0.0:8080"]', f'listen = ["0.0.0.0:8080", "127.0.0.1:{port}"]'),
            ):
                if old not in t:
                    sys.exit(f"sidecar ConfigMap no longer contains {old!r}: update tests/deploy/manifests.py")
                t = t.replace(old, new)
            d["data"]["portcullis.toml"] = t
        if k == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                if c["name"] == "portcullis":
                    c["image"] = "localhost/portcullis:test"
                    for p in c.get("ports", []):
                        p["hostIP"] = "127.0.0.1"
                        p["hostPort"] = port
                        if p["containerPort"] != 8080:
                            sys.exit(f"sidecar declares port {p['containerPort']}: podman would publish it")
                else:
                    c["image"] = "localhost/portcullis-test-app:latest"
        out.append(d)
    with open(out_yaml, "w") as f:
        yaml.safe_dump_all(out, f, sort_keys=False)


def config(manifest, name):
    """Prints the portcullis.toml of the ConfigMap NAME in MANIFEST."""
    for d in load_all(manifest):
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name:
            sys.stdout.write(d["data"]["portcullis.toml"])
            return
    sys.exit(f"{manifest}: no ConfigMap {name}")


if __name__ == "__main__":
    if sys.argv[1] == "config":
        config(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "podman":
        podman(*sys.argv[2:7])
    else:
        sys.exit(__doc__)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)
