#!/usr/bin/env bash
# Builds Kubernetes 1.20.2 from Debian bookworm's source package `kubernetes` (1.20.5+really1.20.2) with
# Debian's Go (golang-1.19), for the test bed (docs/k8s-testbed.md).
#
# Output: ${CKE_K8S_CACHE:-/var/cache/cke-rs/k8s}/<key>/bin with kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubelet, kubectl and the static `pause` of build/pause/linux/pause.c.
# <key> = tarball sha256 + this script's sha256 + Go version, so a second run only prints the directory.
# The last line of stdout is always the bin directory.
#
# Env: CKE_K8S_CACHE (cache root), CKE_K8S_JOBS (parallel compiles, default 2: each takes ~1.3 GiB).
set -euo pipefail

TARBALL=kubernetes_1.20.5+really1.20.2.orig.tar.gz
TARBALL_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
K8S_VERSION=v1.20.2
SRC_PACKAGE=kubernetes
APT_DEPS=(golang-go dpkg-dev gcc libc6-dev golang-github-modern-go-reflect2-dev)

CACHE=${CKE_K8S_CACHE:-/var/cache/cke-rs/k8s}
JOBS=${CKE_K8S_JOBS:-2}
SELF=$(readlink -f "${BASH_SOURCE[0]}")

log() { echo "build-k8s: $*" >&2; }
die() { log "error: $*"; exit 1; }

install_deps() {
  local missing=() p
  for p in "${APT_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

install_deps
command -v go >/dev/null || die "go not found after installing golang-go"
GO_VERSION=$(go env GOVERSION)
SCRIPT_SHA=$(sha256sum "$SELF" | cut -c1-16)
KEY="${TARBALL_SHA256:0:16}-${SCRIPT_SHA}-${GO_VERSION}"
OUT="$CACHE/$KEY"

if [ -x "$OUT/bin/kubectl" ]; then
  echo "$OUT/bin"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
# Another run may have finished while this one waited for the lock.
if [ -x "$OUT/bin/kubectl" ]; then
  echo "$OUT/bin"
  exit 0
fi

# --- source tarball through a private apt source list (never /etc/apt) ---
fetch_source() {
  local dl="$CACHE/src"
  mkdir -p "$dl"
  if [ -f "$dl/$TARBALL" ] && echo "$TARBALL_SHA256  $dl/$TARBALL" | sha256sum -c --quiet - 2>/dev/null; then
    return 0
  fi
  local apt_dir
  apt_dir=$(mktemp -d "$CACHE/apt.XXXXXX")
  # The deb-src line uses the mirror and keyring of the system's own bookworm `deb` entry.
  local uri keyring
  uri=$(grep -h -A6 '^Types: *deb' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}')
  keyring=$(grep -h -A6 '^Types: *deb' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^Suites:/ && / bookworm( |$)/ {f=1} f && /^Signed-By:/ {print $2; exit}')
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $0 ~ / bookworm / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list 2>/dev/null || true)
  fi
  [ -n "$uri" ] || die "no bookworm deb entry found in /etc/apt sources to derive the deb-src mirror from"
  keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
  echo "deb-src [signed-by=$keyring] $uri bookworm main" >"$apt_dir/sources.list"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/dl"
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o APT::Sandbox::User=root)
  log "fetching source package $SRC_PACKAGE from $uri"
  apt-get "${opts[@]}" update -qq >&2
  (cd "$apt_dir/dl" && apt-get "${opts[@]}" source --download-only "$SRC_PACKAGE" >&2)
  [ -f "$apt_dir/dl/$TARBALL" ] || die "apt-get source did not bring $TARBALL (got: $(ls "$apt_dir/dl"))"
  echo "$TARBALL_SHA256  $apt_dir/dl/$TARBALL" | sha256sum -c --quiet - \
    || die "$TARBALL: sha256 mismatch (expected $TARBALL_SHA256)"
  mv "$apt_dir/dl/$TARBALL" "$dl/$TARBALL"
  rm -rf "$apt_dir"
}

fetch_source

start=$(date +%s)
WORK="$CACHE/.work"
rm -rf "$WORK" "$CACHE/.out.tmp"
mkdir -p "$WORK/gopath/src/k8s.io" "$WORK/bin"
trap 'rm -rf "$WORK" "$CACHE/.out.tmp"' EXIT
log "unpacking $TARBALL"
tar xzf "$CACHE/src/$TARBALL" -C "$WORK"
TREE="$WORK/kubernetes-1.20.2"
[ -d "$TREE/cmd/kube-apiserver" ] || die "unexpected tarball layout: no kubernetes-1.20.2/cmd/kube-apiserver"
cd "$TREE"

# Fix 1: Go >= 1.16 wants the `# path => path vX` replacement lines of vendor/modules.txt after the package
# lists (Go 1.15 wrote them before); otherwise -mod=vendor fails with "updates to go.mod needed".
awk '/^# [^ ]+ =>/ {w = w $0 "\n"; next} {print} END {printf "%s", w}' vendor/modules.txt >vendor/modules.txt.new
mv vendor/modules.txt.new vendor/modules.txt

# Fix 2: vendored modern-go/reflect2 v1.0.1 predates Go 1.18 (segfaults marshalling maps); use Debian's v1.0.2.
R2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
R2_DST=vendor/github.com/modern-go/reflect2
[ -f "$R2_SRC/reflect2.go" ] || die "$R2_SRC missing (golang-github-modern-go-reflect2-dev)"
find "$R2_DST" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -delete
find "$R2_SRC" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$R2_DST/" \;

export GOFLAGS=-mod=vendor CGO_ENABLED=0 GOCACHE="$CACHE/go-build" GOPROXY=off GOTOOLCHAIN=local
# Fix 3: generate pkg/generated/openapi/zz_generated.openapi.go as the tree's Makefile does
# (build/root/Makefile.generated_files, target KUBE): openapi-gen over every directory with a Go file carrying
# `+k8s:openapi-gen=`, staging named as vendor, code-generator and sample-apiserver left out.
log "building openapi-gen"
go build -p "$JOBS" -o "$WORK/bin/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
mapfile -t OPENAPI_DIRS < <(
  find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
    | sed 's|^\./staging/src|vendor|; s|^\./||' \
    | xargs grep --color=never -l '^// *+k8s:' \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | xargs grep --color=never -l '+k8s:openapi-gen=' \
    | xargs -n1 dirname | LC_ALL=C sort -u)
[ ${#OPENAPI_DIRS[@]} -gt 50 ] || die "only ${#OPENAPI_DIRS[@]} openapi-gen input directories found"
log "generating openapi over ${#OPENAPI_DIRS[@]} directories"
ln -s "$TREE" "$WORK/gopath/src/k8s.io/kubernetes"
inputs=$(printf 'k8s.io/kubernetes/%s,' "${OPENAPI_DIRS[@]}")
(
  cd "$WORK/gopath/src/k8s.io/kubernetes"
  GOPATH="$WORK/gopath" GO111MODULE=off GOFLAGS="" "$WORK/bin/openapi-gen" --logtostderr \
    -i "${inputs%,}" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -o "$WORK/gopath/src" -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$WORK/violations.report" 2>"$WORK/openapi-gen.log"
) || { tail -20 "$WORK/openapi-gen.log" >&2; die "openapi-gen failed"; }
# The API-violation report equals the tree's list only when the input set is the Makefile's.
diff -u api/api-rules/violation_exceptions.list "$WORK/violations.report" >&2 \
  || die "openapi-gen violation report differs from api/api-rules/violation_exceptions.list"
[ -s pkg/generated/openapi/zz_generated.openapi.go ] || die "zz_generated.openapi.go not generated"

LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
  LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2021-01-13T00:00:00Z"
done
mkdir -p "$CACHE/.out.tmp/bin"
log "building kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl (-p $JOBS)"
go build -p "$JOBS" -trimpath -ldflags "$LDFLAGS" -o "$CACHE/.out.tmp/bin/" \
  ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kube-proxy ./cmd/kubelet ./cmd/kubectl
gcc -Os -static -DVERSION="v3.2-cke" -o "$CACHE/.out.tmp/bin/pause" build/pause/linux/pause.c
strip "$CACHE/.out.tmp/bin/pause"
"$CACHE/.out.tmp/bin/kubectl" version --client --short 2>/dev/null | grep -q "$K8S_VERSION" \
  || die "kubectl does not report $K8S_VERSION"
{
  echo "kubernetes $K8S_VERSION from $TARBALL sha256 $TARBALL_SHA256"
  echo "go $GO_VERSION; script sha256 $SCRIPT_SHA; built $(date -u +%FT%TZ) in $(($(date +%s) - start)) s"
} >"$CACHE/.out.tmp/BUILDINFO"
cd /
mv "$CACHE/.out.tmp" "$OUT"
log "built in $(($(date +%s) - start)) s"
echo "$OUT/bin"
