#!/usr/bin/env bash
# Builds the local images of the Kubernetes test bed (docs/k8s-testbed.md), with no registry, cached by content
# under ${CKE_K8S_CACHE:-/var/cache/cke-rs/k8s}/images/:
#   localhost/cke-kubernetes:1.20.2  podman image tar (docker-archive): the six binaries of scripts/build-k8s.sh plus
#                                    what they execute at run time (iptables/ip6tables nft and legacy, conntrack,
#                                    mount, umount, findmnt, nsenter, nice, du, find, sh) with their ldd libraries
#   localhost/pause:3.2              static pause from the tree's build/pause/linux/pause.c
#   localhost/busybox:latest         Debian's busybox-static
#   localhost/cke-unbound:<version>  Debian's unbound (unbound, unbound-control, unbound-checkconf under
#                                    /usr/local/unbound/sbin, entrypoint `unbound -d -p`, as CKE's image),
#                                    the root hints of Debian's dns-root-data, an empty trust anchor file
#                                    (no DNSSEC validation: the test bed cannot reach the root servers), the
#                                    `reload` sidecar's /usr/local/bin/reload-unbound (scripts/node-dns/), busybox
#   localhost/cke-unbound-exporter:standin  a stand-in for unbound_exporter (scripts/node-dns/unbound_exporter:
#                                    busybox nc + unbound-control, serves unbound_up on :9167); not the real one
# pause, busybox and the two node-dns images are docker-archive tars that `ctr -n k8s.io images import` takes.
# Prints KEY=VALUE lines: K8S_BIN, K8S_IMAGE, K8S_IMAGE_TAR, PAUSE_IMAGE, PAUSE_IMAGE_TAR, BUSYBOX_IMAGE,
# BUSYBOX_IMAGE_TAR, UNBOUND_IMAGE, UNBOUND_IMAGE_TAR, UNBOUND_EXPORTER_IMAGE, UNBOUND_EXPORTER_IMAGE_TAR (also
# written to images/env).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$(readlink -f "${BASH_SOURCE[0]}")
CACHE=${CKE_K8S_CACHE:-/var/cache/cke-rs/k8s}
K8S_IMAGE=localhost/cke-kubernetes:1.20.2
PAUSE_IMAGE=localhost/pause:3.2
BUSYBOX_IMAGE=localhost/busybox:latest
APT_DEPS=(podman iptables util-linux coreutils findutils dash busybox-static)
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)
# What Kubernetes 1.20.2's kubelet and kube-proxy execute, besides themselves.
TOOLS=(/usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi
  /usr/bin/mount /usr/bin/umount /usr/bin/findmnt /usr/bin/nsenter /usr/bin/nice /usr/bin/du /usr/bin/find /usr/bin/dash)
XTABLES_DIR=/usr/lib/x86_64-linux-gnu/xtables

log() { echo "build-k8s-images: $*" >&2; }
die() { log "error: $*"; exit 1; }

# installed PACKAGE: whether Debian's PACKAGE is installed.
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

missing=()
for p in "${APT_DEPS[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

BIN=$("$HERE/build-k8s.sh" | tail -n 1)
[ -x "$BIN/kubelet" ] && [ -x "$BIN/pause" ] || die "build-k8s.sh gave no usable bin dir ($BIN)"
IMG="$CACHE/images"
mkdir -p "$IMG"
exec 9>"$IMG/.lock"
flock 9

# A private podman store, so that building leaves nothing in the host's.
TMP=$(mktemp -d "$IMG/.tmp.XXXXXX")
trap 'podman --root "$TMP/store" --runroot "$TMP/run" --storage-driver vfs rm -a -f >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
pod() { podman --root "$TMP/store" --runroot "$TMP/run" --storage-driver vfs "$@"; }

# conntrack: the host's, or else the binary of Debian's .deb unpacked (its libraries come with iptables).
CONNTRACK=/usr/sbin/conntrack
if [ ! -x "$CONNTRACK" ]; then
  mkdir -p "$TMP/conntrack"
  (cd "$TMP/conntrack" && apt-get -o APT::Sandbox::User=root download conntrack >&2) \
    || die "conntrack is not installed and apt-get download conntrack failed"
  dpkg-deb -x "$TMP"/conntrack/conntrack_*.deb "$TMP/conntrack/x"
  CONNTRACK="$TMP/conntrack/x/usr/sbin/conntrack"
  [ -x "$CONNTRACK" ] || die "no usr/sbin/conntrack in Debian's conntrack .deb"
fi

# copy_with_libs ROOT FILE [DEST]: copies FILE (to DEST in ROOT) and the libraries ldd names, in a
# merged-/usr layout. A library this host lacks is an error: the image would not start.
copy_with_libs() {
  local root=$1 f=$2 dest=${3:-$2} lib deps
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$f" "$root$dest"
  deps=$(ldd "$f" 2>/dev/null) || die "ldd $f failed"
  if grep -q "not found" <<<"$deps"; then
    die "$f needs libraries this host does not have: $(grep "not found" <<<"$deps" | tr -s '\t\n' '  ')"
  fi
  grep -o '/[^ ]*' <<<"$deps" | while read -r lib; do
    [ -f "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
  done
}

new_root() {
  local root=$1
  mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/usr/lib64" "$root/etc" "$root/tmp" "$root/root" \
    "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/var/tmp"
  ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
  echo "root:x:0:" >"$root/etc/group"
  echo "hosts: files dns" >"$root/etc/nsswitch.conf"
}

# import NAME TAR ROOT CHANGE...: a scratch image from ROOT, saved as a docker-archive tar.
import() {
  local name=$1 tar=$2 root=$3; shift 3
  local changes=() c
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$root" -cf "$TMP/rootfs.tar" .
  pod import --quiet "${changes[@]}" "$TMP/rootfs.tar" "$name" >/dev/null
  rm -f "$TMP/rootfs.tar"
  pod save --quiet --format docker-archive -o "$tar.part" "$name"
  mv "$tar.part" "$tar"
  rm -rf "$root"
  log "built $name: $tar ($(du -m "$tar" | cut -f1) MiB)"
}

script_sum=$(sha256sum "$SELF" | cut -c1-16)
PATH_ENV="ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"

# --- Kubernetes ---
k8s_sum=$({ echo "$BIN $script_sum"; sha256sum "${TOOLS[@]}" "$CONNTRACK" "$XTABLES_DIR"/*.so | cut -c1-64; } \
  | sha256sum | cut -c1-16)
K8S_TAR="$IMG/cke-kubernetes_1.20.2-$k8s_sum.tar"
if [ ! -f "$K8S_TAR" ]; then
  root="$TMP/k8s"
  new_root "$root"
  mkdir -p "$root/usr/local/bin"
  for b in "${K8S_BINS[@]}"; do cp "$BIN/$b" "$root/usr/local/bin/"; done
  for t in "${TOOLS[@]}"; do copy_with_libs "$root" "$t"; done
  copy_with_libs "$root" "$CONNTRACK" /usr/sbin/conntrack
  for m in "$XTABLES_DIR"/*.so; do copy_with_libs "$root" "$m"; done
  ln -s dash "$root/usr/bin/sh"
  for fam in iptables ip6tables; do
    for s in "" -save -restore; do
      ln -s xtables-nft-multi "$root/usr/sbin/$fam-nft$s"
      ln -s xtables-legacy-multi "$root/usr/sbin/$fam-legacy$s"
      # The same backend as the host's iptables, which shares the kernel with every node.
      ln -s "$(basename "$(readlink -f "/usr/sbin/$fam$s" 2>/dev/null || echo xtables-nft-multi)")" "$root/usr/sbin/$fam$s"
    done
  done
  import "$K8S_IMAGE" "$K8S_TAR" "$root" "$PATH_ENV"
fi

# --- pause ---
pause_sum=$({ echo "$script_sum"; sha256sum "$BIN/pause"; } | sha256sum | cut -c1-16)
PAUSE_TAR="$IMG/pause_3.2-$pause_sum.tar"
if [ ! -f "$PAUSE_TAR" ]; then
  root="$TMP/pause"
  mkdir -p "$root"
  cp "$BIN/pause" "$root/pause"
  import "$PAUSE_IMAGE" "$PAUSE_TAR" "$root" 'ENTRYPOINT ["/pause"]'
fi

# --- busybox ---
busybox_sum=$({ echo "$script_sum"; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)
BUSYBOX_TAR="$IMG/busybox-$busybox_sum.tar"
if [ ! -f "$BUSYBOX_TAR" ]; then
  root="$TMP/busybox"
  new_root "$root"
  cp /bin/busybox "$root/usr/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ -e "$root/usr/bin/$a" ] || ln -s busybox "$root/usr/bin/$a"
  done
  import "$BUSYBOX_IMAGE" "$BUSYBOX_TAR" "$root" "$PATH_ENV" 'CMD ["sh"]'
fi

# --- node-dns: unbound and the exporter stand-in ---
# Debian's unbound is downloaded and unpacked, not installed: installing it would start a resolver on the
# host. Its libraries are installed (when missing) so that ldd finds them.
candidate() {
  local v; v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  [ -n "$v" ] && [ "$v" != "(none)" ] || die "no candidate version of $1 (apt-get update?)"
  echo "$v"
}
unbound_deb_version=$(candidate unbound)
root_data_version=$(candidate dns-root-data)
UNBOUND_VERSION=${unbound_deb_version#*:}
UNBOUND_VERSION=${UNBOUND_VERSION%%-*}
UNBOUND_IMAGE=localhost/cke-unbound:$UNBOUND_VERSION
UNBOUND_EXPORTER_IMAGE=localhost/cke-unbound-exporter:standin
NODE_DNS="$HERE/node-dns"
dns_sum=$({ echo "$script_sum $unbound_deb_version $root_data_version"; sha256sum /bin/busybox "$NODE_DNS"/*; } \
  | sha256sum | cut -c1-16)
UNBOUND_TAR="$IMG/cke-unbound_$UNBOUND_VERSION-$dns_sum.tar"
UNBOUND_EXPORTER_TAR="$IMG/cke-unbound-exporter-$dns_sum.tar"
if [ ! -f "$UNBOUND_TAR" ] || [ ! -f "$UNBOUND_EXPORTER_TAR" ]; then
  debs="$TMP/node-dns"
  mkdir -p "$debs"
  (cd "$debs" && apt-get -o APT::Sandbox::User=root download "unbound=$unbound_deb_version" \
    "dns-root-data=$root_data_version" >&2) || die "apt-get download unbound dns-root-data failed"
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$debs/x"; done
  UNBOUND_BINS=(unbound unbound-control unbound-checkconf)
  # ldd's whole output first: `ldd | grep -q` under pipefail fails when grep exits at the first
  # match and ldd gets SIGPIPE, which skipped this install on a fresh machine.
  unbound_ldd=$(ldd "${UNBOUND_BINS[@]/#/$debs/x/usr/sbin/}")
  if grep -q "not found" <<<"$unbound_ldd"; then
    # Only the library packages not installed: naming installed ones would upgrade them (and
    # what depends on them, systemd among them) on the host.
    libs=()
    for p in $(dpkg-deb -f "$debs"/unbound_*.deb Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//' | tr -d ' ' \
      | grep '^lib'); do
      installed "$p" || libs+=("$p")
    done
    [ ${#libs[@]} -gt 0 ] || die "unbound's libraries are installed, yet ldd does not find: $(grep "not found" <<<"$unbound_ldd" | tr -s '\t\n' '  ')"
    log "installing unbound's libraries: ${libs[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${libs[@]}" >&2
  fi
  # busybox_root ROOT: a root with busybox and its applets (the scripts' shell and tools).
  busybox_root() {
    new_root "$1"
    cp /bin/busybox "$1/usr/bin/busybox"
    for a in $(/bin/busybox --list); do
      [ -e "$1/usr/bin/$a" ] || ln -s busybox "$1/usr/bin/$a"
    done
    mkdir -p "$1/usr/local/bin" "$1/usr/local/unbound/sbin" "$1/var/run/unbound" "$1/etc/unbound"
  }

  root="$TMP/unbound"
  busybox_root "$root"
  for b in "${UNBOUND_BINS[@]}"; do
    copy_with_libs "$root" "$debs/x/usr/sbin/$b" "/usr/local/unbound/sbin/$b"
  done
  mkdir -p "$root/usr/local/unbound/etc/unbound"
  cp "$debs/x/usr/share/dns/root.hints" "$root/usr/local/unbound/etc/unbound/root.hints"
  : >"$root/usr/local/unbound/etc/unbound/root.key"
  install -m 0755 "$NODE_DNS/reload-unbound" "$root/usr/local/bin/reload-unbound"
  import "$UNBOUND_IMAGE" "$UNBOUND_TAR" "$root" \
    "ENV PATH=/usr/local/unbound/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    'ENTRYPOINT ["unbound", "-d", "-p"]'

  root="$TMP/unbound-exporter"
  busybox_root "$root"
  copy_with_libs "$root" "$debs/x/usr/sbin/unbound-control" /usr/local/unbound/sbin/unbound-control
  mkdir -p "$root/etc/unbound-exporter"
  cp "$NODE_DNS/unbound-control.conf" "$root/etc/unbound-exporter/unbound-control.conf"
  install -m 0755 "$NODE_DNS/unbound_exporter" "$NODE_DNS/unbound-exporter-respond" "$root/usr/local/bin/"
  import "$UNBOUND_EXPORTER_IMAGE" "$UNBOUND_EXPORTER_TAR" "$root" \
    "ENV PATH=/usr/local/unbound/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    'ENTRYPOINT ["/usr/local/bin/unbound_exporter"]'
fi

{
  echo "K8S_BIN=$BIN"
  echo "K8S_IMAGE=$K8S_IMAGE"
  echo "K8S_IMAGE_TAR=$K8S_TAR"
  echo "PAUSE_IMAGE=$PAUSE_IMAGE"
  echo "PAUSE_IMAGE_TAR=$PAUSE_TAR"
  echo "BUSYBOX_IMAGE=$BUSYBOX_IMAGE"
  echo "BUSYBOX_IMAGE_TAR=$BUSYBOX_TAR"
  echo "UNBOUND_IMAGE=$UNBOUND_IMAGE"
  echo "UNBOUND_IMAGE_TAR=$UNBOUND_TAR"
  echo "UNBOUND_EXPORTER_IMAGE=$UNBOUND_EXPORTER_IMAGE"
  echo "UNBOUND_EXPORTER_IMAGE_TAR=$UNBOUND_EXPORTER_TAR"
} | tee "$IMG/env.part"
mv "$IMG/env.part" "$IMG/env"
# Tars of earlier inputs (another script version, say) go once no run has used them for 7 days.
touch "$K8S_TAR" "$PAUSE_TAR" "$BUSYBOX_TAR" "$UNBOUND_TAR" "$UNBOUND_EXPORTER_TAR"
find "$IMG" -maxdepth 1 -name '*.tar' -mtime +7 -delete
