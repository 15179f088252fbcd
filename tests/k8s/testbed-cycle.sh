#!/usr/bin/env bash
# Runs Kubernetes 1.20.2 by hand on mtest node hosts brought up with `mtest.sh up --k8s` (at least 2 nodes):
# an etcd container and the control plane (apiserver, controller-manager, scheduler) on node1, kubelet and
# kube-proxy on every node, all as podman containers from the local images, with throw-away certificates.
# Then waits for every Node to be Ready and runs busybox pods. Used by tests/k8s_testbed.rs; the cke
# operators replace the hand-run part.
#
# usage: testbed-cycle.sh MTEST_DIR PREFIX SUBNET      (prints FIGURE lines; exits non-zero on any failure)
set -euo pipefail
MDIR=$1 PREFIX=$2 SUBNET=$3
HERE=$(cd "$(dirname "$0")" && pwd)
MTEST="$HERE/../../mtest/mtest.sh"
# shellcheck disable=SC1091
set -a; . "$MDIR/env"; set +a
[ "${K8S:-}" = 1 ] || { echo "mtest env has no K8S=1: bring the nodes up with --k8s" >&2; exit 1; }
N=$NODE_COUNT
PKI=$MDIR/k8s-pki
KUBECTL="$K8S_BIN/kubectl --kubeconfig=$PKI/admin.kubeconfig"
SERVICE_RANGE=10.201.0.0/24
POD_RANGE=10.200.0.0/16
t0=$(date +%s.%N)

log() { echo "testbed: $*" >&2; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }
figure() { echo "FIGURE $1: $(since "$t0") s"; }
mt() { bash "$MTEST" --dir "$MDIR" --prefix "$PREFIX" --subnet "$SUBNET" "$@"; }
node_fs() { echo "$MDIR/nodes/node$1/fs"; }
fail() {
  log "FAILED: $*"
  for i in $(seq "$N"); do
    for c in $(mt exec "$i" podman ps -a --format '{{.Names}}' 2>/dev/null); do
      log "--- node$i $c (last lines)"
      mt exec "$i" podman logs --tail 15 "$c" 2>&1 | sed "s/^/node$i $c: /" >&2 || true
    done
  done
  $KUBECTL get nodes,pods -A -o wide >&2 || true
  exit 1
}

# --- throw-away PKI: one CA, EC P-256 keys, SANs everywhere (Go 1.19 ignores CN for host names) ---
mkdir -p "$PKI"
cd "$PKI"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj /CN=testbed-ca -days 2 -out ca.crt 2>/dev/null
# cert NAME CN O EXT_SAN
cert() {
  local name=$1 cn=$2 o=$3 san=$4 subj="/CN=$2"
  [ -n "$o" ] && subj="/O=$o/CN=$cn"
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n%s\n' \
    "${san:+subjectAltName=$san}" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$name.ext" \
    -out "$name.crt" 2>/dev/null
}
cert apiserver kube-apiserver "" "IP:$NODE1,IP:127.0.0.1,IP:10.201.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost"
cert admin admin system:masters ""
cert controller-manager system:kube-controller-manager "" ""
cert scheduler system:kube-scheduler "" ""
cert proxy system:kube-proxy "" ""
openssl ecparam -name prime256v1 -genkey -noout -out service-account.key 2>/dev/null
openssl ec -in service-account.key -pubout -out service-account.pub 2>/dev/null
kubeconfig() { # kubeconfig OUT CERT SERVER
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster: {server: "$3", certificate-authority: /etc/kubernetes/pki/ca.crt}
users:
- name: u
  user: {client-certificate: /etc/kubernetes/pki/$2.crt, client-key: /etc/kubernetes/pki/$2.key}
contexts:
- name: c
  context: {cluster: testbed, user: u}
current-context: c
EOF
}
SERVER=https://$NODE1:6443
# admin: the host's kubectl, with host paths.
kubeconfig admin.kubeconfig admin "$SERVER"
sed -i "s|/etc/kubernetes/pki|$PKI|g" admin.kubeconfig
figure "pki"

# --- files on every node (its /etc/kubernetes and /etc/cni/net.d are per-node bind sources) ---
for i in $(seq "$N"); do
  ip_var=NODE$i; ip=${!ip_var}; fs=$(node_fs "$i"); cg_var=CGROUP_ROOT$i
  mkdir -p "$fs/etc/kubernetes/pki" "$fs/etc/kubernetes/kubelet" "$fs/etc/kubernetes/proxy" \
    "$fs/etc/kubernetes/scheduler" "$fs/etc/kubernetes/controller-manager"
  cert "kubelet-$i" "system:node:$ip" system:nodes "IP:$ip"
  cp ca.crt apiserver.crt apiserver.key controller-manager.* scheduler.* proxy.* service-account.* \
    "$fs/etc/kubernetes/pki/"
  cp "kubelet-$i.crt" "$fs/etc/kubernetes/pki/kubelet.crt"
  cp "kubelet-$i.key" "$fs/etc/kubernetes/pki/kubelet.key"
  kubeconfig "$fs/etc/kubernetes/kubelet/kubeconfig" kubelet "$SERVER"
  kubeconfig "$fs/etc/kubernetes/proxy/kubeconfig" proxy "$SERVER"
  kubeconfig "$fs/etc/kubernetes/controller-manager/kubeconfig" controller-manager "$SERVER"
  kubeconfig "$fs/etc/kubernetes/scheduler/kubeconfig" scheduler "$SERVER"
  cat > "$fs/etc/kubernetes/kubelet/config.yml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
  webhook: {enabled: true}
  anonymous: {enabled: false}
authorization: {mode: Webhook}
tlsCertFile: /etc/kubernetes/pki/kubelet.crt
tlsPrivateKeyFile: /etc/kubernetes/pki/kubelet.key
cgroupDriver: cgroupfs
cgroupRoot: ${!cg_var}
clusterDomain: cluster.local
clusterDNS: [10.201.0.10]
failSwapOn: false
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
EOF
  cat > "$fs/etc/kubernetes/proxy/config.yml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: /etc/kubernetes/proxy/kubeconfig}
hostnameOverride: "$ip"
bindAddress: "$ip"
clusterCIDR: $POD_RANGE
mode: iptables
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  cat > "$fs/etc/kubernetes/scheduler/config.yml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1beta1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: /etc/kubernetes/scheduler/kubeconfig}
EOF
  mkdir -p "$fs/etc/cni/net.d"
  cat > "$fs/etc/cni/net.d/10-testbed.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "testbed", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.200.$i.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
done
figure "files"

COMMON=(-d --network host --uts host -v /etc/machine-id:/etc/machine-id:ro -v /etc/kubernetes:/etc/kubernetes:ro)
IMAGE=$K8S_IMAGE

# --- etcd and the control plane on node1 ---
mt exec 1 podman run -d --name etcd --network host -v /var/lib/etcd:/var/lib/etcd localhost/cke-etcd:latest \
  etcd --name testbed --data-dir /var/lib/etcd/testbed \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster testbed=http://127.0.0.1:2380 >/dev/null
P=/etc/kubernetes/pki
mt exec 1 podman run "${COMMON[@]}" --name kube-apiserver --tmpfs /run/kubernetes "$IMAGE" kube-apiserver \
  --allow-privileged --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=6443 \
  --advertise-address="$NODE1" --client-ca-file=$P/ca.crt --tls-cert-file=$P/apiserver.crt \
  --tls-private-key-file=$P/apiserver.key --kubelet-client-certificate=$P/apiserver.crt \
  --kubelet-client-key=$P/apiserver.key --enable-admission-plugins=NodeRestriction \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file=$P/service-account.pub --service-account-signing-key-file=$P/service-account.key \
  --authorization-mode=Node,RBAC --service-cluster-ip-range=$SERVICE_RANGE >/dev/null
ready=0
for _ in $(seq 120); do
  if curl -sf --cacert ca.crt --cert admin.crt --key admin.key "$SERVER/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || fail "kube-apiserver /readyz not ok on $SERVER"
figure "apiserver ready"
# The apiserver must be reachable from every node host, not only from the host.
for i in $(seq 2 "$N"); do
  mt exec "$i" bash -c "exec 3<>/dev/tcp/$NODE1/6443" || fail "node$i cannot reach $NODE1:6443"
done
mt exec 1 podman run "${COMMON[@]}" --name kube-controller-manager "$IMAGE" kube-controller-manager \
  --port=0 --cluster-name=testbed --service-cluster-ip-range=$SERVICE_RANGE \
  --kubeconfig=/etc/kubernetes/controller-manager/kubeconfig \
  --authentication-kubeconfig=/etc/kubernetes/controller-manager/kubeconfig \
  --authorization-kubeconfig=/etc/kubernetes/controller-manager/kubeconfig \
  --tls-cert-file=$P/apiserver.crt --tls-private-key-file=$P/apiserver.key --root-ca-file=$P/ca.crt \
  --service-account-private-key-file=$P/service-account.key --use-service-account-credentials=true >/dev/null
mt exec 1 podman run "${COMMON[@]}" --name kube-scheduler "$IMAGE" kube-scheduler --port=0 \
  --config=/etc/kubernetes/scheduler/config.yml \
  --authentication-kubeconfig=/etc/kubernetes/scheduler/kubeconfig \
  --authorization-kubeconfig=/etc/kubernetes/scheduler/kubeconfig \
  --tls-cert-file=$P/apiserver.crt --tls-private-key-file=$P/apiserver.key >/dev/null

# --- kubelet and kube-proxy on every node ---
tk=$(date +%s.%N)
for i in $(seq "$N"); do
  ip_var=NODE$i; ip=${!ip_var}
  mt exec "$i" podman run "${COMMON[@]}" --name kubelet --pid=host --privileged --tmpfs=/tmp \
    -v /etc/os-release:/etc/os-release:ro -v /var/lib/kubelet:/var/lib/kubelet:rw,rshared \
    -v /var/lib/containerd:/var/lib/containerd:rw -v /opt/volume/bin:/opt/volume/bin:rw,shared \
    -v /var/log/pods:/var/log/pods:rw -v /var/log/containers:/var/log/containers:rw -v /run:/run:rw \
    -v /sys:/sys:rw -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v /dev:/dev:rw -v /opt/cni/bin:/opt/cni/bin:ro \
    -v /etc/cni/net.d:/etc/cni/net.d:ro -v /var/lib/cni:/var/lib/cni:rw -v /lib/modules:/lib/modules:ro \
    "$IMAGE" kubelet --config=/etc/kubernetes/kubelet/config.yml --kubeconfig=/etc/kubernetes/kubelet/kubeconfig \
    --hostname-override="$ip" --node-ip="$ip" --container-runtime=remote \
    --container-runtime-endpoint=unix:///run/containerd/containerd.sock >/dev/null
  mt exec "$i" podman run "${COMMON[@]}" --name kube-proxy --privileged --tmpfs=/run \
    -v /lib/modules:/lib/modules:ro "$IMAGE" kube-proxy --config=/etc/kubernetes/proxy/config.yml >/dev/null
done

ready=""
for _ in $(seq 180); do
  ready=$($KUBECTL get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null \
    | grep -c True || true)
  [ "$ready" = "$N" ] && break
  sleep 1
done
[ "$ready" = "$N" ] || fail "$ready of $N Nodes Ready"
echo "FIGURE nodes ready after kubelet start: $(since "$tk") s"
figure "all $N nodes ready"

# --- busybox pods: one per node, pinned, each with its service-account token volume ---
for i in $(seq "$N"); do
  ip_var=NODE$i; ip=${!ip_var}
  manifest="apiVersion: v1
kind: Pod
metadata: {name: bb-$i}
spec:
  nodeName: \"$ip\"
  restartPolicy: Never
  containers:
  - name: bb
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, 'test -s /var/run/secrets/kubernetes.io/serviceaccount/token && hostname -i && sleep 3600']"
  created=0
  # The default ServiceAccount appears once the controller-manager has started.
  for _ in $(seq 60); do
    if echo "$manifest" | $KUBECTL apply -f - >/dev/null 2>&1; then created=1; break; fi
    sleep 1
  done
  [ "$created" = 1 ] || fail "could not create pod bb-$i"
done
# One more, placed by the scheduler.
cat <<EOF | $KUBECTL apply -f - >/dev/null || fail "could not create pod bb-scheduled"
apiVersion: v1
kind: Pod
metadata: {name: bb-scheduled}
spec:
  restartPolicy: Never
  containers:
  - {name: bb, image: $BUSYBOX_IMAGE, imagePullPolicy: Never, command: [sleep, "3600"]}
EOF
for p in $(seq "$N") scheduled; do
  phase=""
  reason=""
  for _ in $(seq 90); do
    phase=$($KUBECTL get pod "bb-$p" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [ "$phase" = Running ] && break
    case "$phase" in Failed|Succeeded) break ;; esac
    # Waiting reasons that never clear by themselves.
    reason=$($KUBECTL get pod "bb-$p" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)
    case "$reason" in ErrImageNeverPull|InvalidImageName|CreateContainerConfigError|CreateContainerError) break ;; esac
    reason=""
    sleep 1
  done
  [ "$phase" = Running ] || fail "pod bb-$p is ${phase:-not there}${reason:+ ($reason)}, not Running"
done
for i in $(seq "$N"); do
  pod_ip=$($KUBECTL get pod "bb-$i" -o jsonpath='{.status.podIP}')
  case "$pod_ip" in 10.200.$i.*) ;; *) fail "pod bb-$i has IP '$pod_ip', not from node$i's CNI range 10.200.$i.0/24" ;; esac
done
figure "busybox pods running"
$KUBECTL get nodes -o wide
$KUBECTL get pods -o wide
