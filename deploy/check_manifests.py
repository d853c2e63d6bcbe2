"""The Kubernetes manifests in deploy/kubernetes/ against the tine.toml their ConfigMap holds:
what a schema cannot see. Run by deploy/check, after the schemas passed; writes the ConfigMap's
tine.toml to the path given, for `tine --check-config`.

usage: check_manifests.py KUBERNETES_DIR TOML_OUT

Each problem is printed as `error: FILE: what is wrong; what to change`, all of them, and the
exit status is 1 if there was any.
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

# tine's durations: "500ms", "30s", "2m", "1h", or combined from largest to smallest ("1m30s").
UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
DURATION = re.compile(r"(\d+)(ms|h|m|s)")


def seconds(text):
    """A tine duration string in seconds; ValueError when it is not one."""
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like \"30s\" or \"1m30s\"")
    return sum(int(n) * UNITS[u] for n, u in parts)


def port_of(address):
    """The port of an "ip:port" or "[ipv6]:port" bind address."""
    return int(address.rsplit(":", 1)[1])


def load(directory):
    """Every resource in the directory's YAML files but the kustomization, by kind."""
    resources = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                resources.setdefault(doc["kind"], []).append((path.name, doc))
    return resources


def one(resources, kind, problems):
    """The (file name, resource) of the only resource of `kind`; (None, None), with a problem
    noted, when there is not exactly one."""
    found = resources.get(kind, [])
    if len(found) != 1:
        problems.append(f"deploy/kubernetes: {len(found)} {kind} resources; exactly one expected")
        return None, None
    return found[0]


def check(directory, toml_out):
    problems = []
    resources = load(directory)

    listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(on_disk - listed):
        problems.append(f"kustomization.yaml: {name} is not in resources; add it")
    for name in sorted(listed - on_disk):
        problems.append(f"kustomization.yaml: resources names {name}, which does not exist")

    config_file, config_map = one(resources, "ConfigMap", problems)
    deploy_file, deployment = one(resources, "Deployment", problems)
    if config_map is None or deployment is None:
        return problems
    toml_text = config_map["data"]["tine.toml"]
    Path(toml_out).write_text(toml_text)
    config = tomllib.loads(toml_text)
    server = config.get("server", {})

    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    named_ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}

    def resolve(port):
        return named_ports.get(port) if isinstance(port, str) else port

    graceful = seconds(server.get("graceful_timeout", "30s"))
    drain = seconds(server.get("drain_delay", "0s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= graceful + drain:
        problems.append(
            f"{deploy_file}: terminationGracePeriodSeconds is {grace}, not above "
            f"drain_delay + graceful_timeout ({drain:g}s + {graceful:g}s in {config_file}): "
            "the kubelet would kill tine while it still drains; raise it"
        )

    metrics_bind = config.get("metrics", {}).get("bind", "")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe is None:
            problems.append(f"{deploy_file}: the container has no {kind}; add one on /healthz")
            continue
        get = probe.get("httpGet", {})
        if get.get("path") != "/healthz":
            problems.append(f"{deploy_file}: {kind} asks {get.get('path')!r}; tine answers /healthz")
        if not metrics_bind:
            problems.append(
                f"{config_file}: [metrics] bind is empty, so nothing answers the {kind} "
                "on /healthz; set it"
            )
        elif resolve(get.get("port")) != port_of(metrics_bind):
            problems.append(
                f"{deploy_file}: {kind} goes to port {get.get('port')!r} "
                f"({resolve(get.get('port'))}), but [metrics] bind in {config_file} is "
                f"{metrics_bind}; make them the same"
            )

    readiness = container.get("readinessProbe")
    if readiness and drain > 0:
        notices = readiness.get("periodSeconds", 10) * readiness.get("failureThreshold", 3)
        if notices >= drain:
            problems.append(
                f"{deploy_file}: the readinessProbe needs {notices}s "
                "(periodSeconds x failureThreshold) to see the 503, not less than drain_delay "
                f"({drain:g}s): probe more often or raise drain_delay"
            )

    binds = server.get("bind", ["127.0.0.1:8000"])
    binds = [binds] if isinstance(binds, (str, dict)) else binds
    bind_ports = {port_of(b["address"] if isinstance(b, dict) else b) for b in binds}
    if named_ports.get("http") not in bind_ports:
        problems.append(
            f"{deploy_file}: containerPort http is {named_ports.get('http')}, not a port of "
            f"[server] bind in {config_file} ({sorted(bind_ports)}); make them the same"
        )

    config_volumes = {
        volume["name"]
        for volume in pod.get("volumes", [])
        if volume.get("configMap", {}).get("name") == config_map["metadata"]["name"]
    }
    mount_paths = {
        mount["mountPath"]
        for mount in container.get("volumeMounts", [])
        if mount["name"] in config_volumes
    }
    if "/etc/tine" not in mount_paths:
        problems.append(
            f"{deploy_file}: the ConfigMap {config_map['metadata']['name']} is not mounted at "
            "/etc/tine, where the image's CMD reads tine.toml"
        )
    return problems


def main():
    directory, toml_out = Path(sys.argv[1]), sys.argv[2]
    problems = check(directory, toml_out)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
