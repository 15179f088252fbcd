#!/usr/bin/env bash
# make demo: five Kubernetes node hosts (mtest --k8s: containerd, cgroup roots, the local Kubernetes
# 1.20.2 images), a management etcd, OpenBao, `ckecli vault init`, the declaration
# testdata/cluster-demo.yml (3 control planes, 2 workers) and `cke` with the test-bed node profile.
# Waits until the managed etcd is healthy and every Node is Ready, writes an admin kubeconfig to
# .demo/kubeconfig and prints what to try. `scripts/demo.sh down` removes everything and checks that
# no network namespace, process or mount is left. Needs the Kubernetes build (`make k8s`; `make demo`
# runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$PWD/.demo
BIN=$PWD/target/debug
PREFIX=demo
MTEST="$PWD/mtest/mtest.sh --dir $DIR/mtest --prefix $PREFIX --subnet 10.66.0"
DEMO_CPS=(10.66.0.11 10.66.0.12 10.66.0.13)
DEMO_NODES=(10.66.0.11 10.66.0.12 10.66.0.13 10.66.0.14 10.66.0.15)
READY_TIMEOUT=${DEMO_READY_TIMEOUT:-480}

# The cke of a previous demo: only the process the pid file names, and only if it is our cke.
stop_cke() {
  [ -f "$DIR/cke.pid" ] || return 0
  local pid; pid=$(cat "$DIR/cke.pid")
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "^$BIN/cke "; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/cke.pid"
}

# What a demo could leave on the host; prints one line per leftover.
leftovers() {
  ip netns list 2>/dev/null | awk -v p="$PREFIX-node" 'index($1, p) == 1 {print "network namespace " $1}'
  ip link show "${PREFIX}br0" >/dev/null 2>&1 && echo "bridge ${PREFIX}br0"
  grep -F "$DIR" /proc/self/mountinfo | awk '{print "mount " $5}'
  for c in /sys/fs/cgroup/*/"mtest.$PREFIX-node"*; do [ -e "$c" ] && echo "cgroup $c"; done
  # Processes whose command line or working directory is in the demo directory (sshd, containerd,
  # etcd, OpenBao, cke).
  for p in /proc/[0-9]*; do
    args=$({ tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null) || continue
    case $args in *"$DIR/"*) echo "process ${p#/proc/}: ${args:0:100}" ;; esac
  done
  true
}

down() {
  stop_cke
  $MTEST down >/dev/null 2>&1 || true
  rm -rf "$DIR"
}

elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

if [ "${1:-up}" = down ]; then
  down
  left=$(leftovers)
  if [ -n "$left" ]; then echo "demo removed, but left on the host:"; echo "$left"; exit 1; fi
  echo "demo removed (no network namespace, process or mount left)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make demo needs root (network and mount namespaces)"; exit 1; }

t_all=$(date +%s)
down
mkdir -p "$DIR"
echo "==> 5 Kubernetes node hosts ${DEMO_NODES[0]}-15 (containerd, Kubernetes 1.20.2 images), management etcd, OpenBao"
$MTEST up --nodes 5 --k8s --image "localhost/cke-tools:latest=$BIN/rivers"
set -a; . "$DIR/mtest/env"; set +a
export CKECLI_CONFIG=$CKE_CONFIG
KUBECTL=$K8S_BIN/kubectl
KUBECONFIG=$DIR/kubeconfig
echo "node hosts up after $(elapsed "$t_all")"
run() { echo; echo "\$ ckecli $*"; "$BIN/ckecli" "$@"; }

run vault init | tail -3
run vault ssh-privkey "$SSH_KEY"
run constraints set control-plane-count 3
run cluster set testdata/cluster-demo.yml

echo; echo "==> starting cke with --node-profile testbed --kubernetes-image $K8S_IMAGE"
echo "    --unbound-image $UNBOUND_IMAGE --unbound-exporter-image $UNBOUND_EXPORTER_IMAGE"
echo "    (log: $DIR/cke.log, status: http://127.0.0.1:10180/status)"
CKE_LOG=info setsid "$BIN/cke" --config "$CKE_CONFIG" --name demo --http 127.0.0.1:10180 --interval 3s \
  --session-ttl 10s --container-cli podman --node-profile testbed --kubernetes-image "$K8S_IMAGE" \
  --unbound-image "$UNBOUND_IMAGE" --unbound-exporter-image "$UNBOUND_EXPORTER_IMAGE" \
  > "$DIR/cke.log" 2>&1 < /dev/null &
echo $! > "$DIR/cke.pid"
start=$(date +%s)

fail() {
  echo "$1 after $(elapsed "$start"); the demo is left up for a look (make demo-down removes it)"
  echo "--- cke log (tail):"; tail -20 "$DIR/cke.log"
  echo "--- ckecli history -n 3:"; "$BIN/ckecli" history -n 3 2>&1 | tail -30
  exit 1
}

# Root credentials for the managed etcd, to watch it come up.
members() {
  "$BIN/ckecli" etcd root-issue --output json > "$DIR/root.json"
  python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]; v = json.load(open(f"{d}/root.json"))
for k, f in (("certificate", "root.crt"), ("private_key", "root.key"), ("ca_certificate", "ca.crt")):
    open(f"{d}/{f}", "w").write(v[k])
PY
  ETCDCTL_API=3 etcdctl --endpoints "$1" --cacert "$DIR/ca.crt" --cert "$DIR/root.crt" --key "$DIR/root.key" \
    --command-timeout 3s member list -w table
}
EPS=$(printf 'https://%s:2379,' "${DEMO_CPS[@]}"); EPS=${EPS%,}
echo "==> waiting for the managed etcd"
until members "$EPS" > "$DIR/members.txt" 2>/dev/null \
      && [ "$(grep -c started "$DIR/members.txt")" -eq 3 ] && ! grep -q true "$DIR/members.txt"; do
  sleep 2
  [ $(( $(date +%s) - start )) -le 300 ] || fail "the managed etcd is not up"
done
echo "managed etcd is up after $(elapsed "$start"):"
cat "$DIR/members.txt"

# Ready Node names, one a line.
ready_nodes() {
  "$KUBECTL" --kubeconfig "$KUBECONFIG" --request-timeout=5s get nodes -o \
    'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    2>/dev/null | awk '$2 == "True" {print $1}' | sort || true
}
want=$(printf '%s\n' "${DEMO_NODES[@]}" | sort)
echo; echo "==> waiting for the apiservers and every Node Ready (up to ${READY_TIMEOUT}s)"
last=""
while :; do
  # The admin kubeconfig can be issued once the Kubernetes CA exists.
  if "$BIN/ckecli" kubernetes issue > "$KUBECONFIG.part" 2>/dev/null; then mv "$KUBECONFIG.part" "$KUBECONFIG"; fi
  ready=""; [ -s "$KUBECONFIG" ] && ready=$(ready_nodes)
  [ "$ready" = "$want" ] && break
  n=$(printf '%s' "$ready" | grep -c . || true)
  if [ "$n" != "$last" ]; then echo "  $(elapsed "$start"): $n of ${#DEMO_NODES[@]} Nodes Ready"; last=$n; fi
  [ $(( $(date +%s) - start )) -le "$READY_TIMEOUT" ] || fail "not every Node is Ready"
  sleep 2
done
t_ready=$(elapsed "$start")
echo "every Node Ready ${t_ready} after cke started ($(elapsed "$t_all") since make demo began)"
chmod 600 "$KUBECONFIG"
echo; echo "\$ kubectl get nodes -o wide"
"$KUBECTL" --kubeconfig "$KUBECONFIG" get nodes -o wide

cat > "$DIR/busybox.yml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: busybox}
spec:
  replicas: 2
  selector: {matchLabels: {app: busybox}}
  template:
    metadata: {labels: {app: busybox}}
    spec:
      containers:
      - name: httpd
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: busybox}
spec:
  selector: {app: busybox}
  ports: [{port: 80, targetPort: 8080}]
YAML

cat <<MSG

Kubernetes 1.20.2 is running: 3 control planes (${DEMO_CPS[*]}) and 2 workers. Try:
  export PATH=$K8S_BIN:$BIN:\$PATH KUBECONFIG=$KUBECONFIG
  export CKECLI_CONFIG=$CKE_CONFIG VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=$VAULT_TOKEN
  kubectl get nodes -o wide
  kubectl get pods -A -o wide          # kube-system: node-dns (unbound) on every node; cluster-dns
                                       # (CoreDNS) stays pending: no CoreDNS image here
  kubectl apply -f $DIR/busybox.yml    # 2 busybox httpd pods (image localhost/busybox:latest,
                                       # imagePullPolicy: Never) and a Service
  kubectl get pods -o wide -w
  $MTEST exec 5 curl -s http://\$(kubectl get svc busybox -o jsonpath={.spec.clusterIP})/   # from a worker
  ckecli status; ckecli plan
  ckecli history -n 10                 # -f follows
  ckecli kubernetes issue > admin.conf # a new admin kubeconfig (valid 2 hours)
  $MTEST exec 1 podman ps   # the components on node 10.66.0.11
  curl -s 127.0.0.1:10180/status; curl -s 127.0.0.1:10180/metrics | grep cke_
Scale: promote the two workers to control planes (5 etcd members, learners join one at a time):
  ckecli constraints set control-plane-count 5 && ckecli cluster set testdata/cluster-demo-5.yml
And back: demote them (their etcd members removed, control-plane containers stopped; they stay nodes):
  ckecli constraints set control-plane-count 3 && ckecli cluster set testdata/cluster-demo.yml
Remove everything: make demo-down
MSG
