// Renders the golden files of src/k8s/dns.rs with CKE's own templates (text copied verbatim from
// cybozu-go/cke @ d66a146, op/clusterdns/clusterdns.go and op/nodedns/nodedns.go) and Go's text/template:
//   GO111MODULE=off go run testdata/dns/render.go testdata/dns

package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"text/template"
)

var clusterDNSTemplate = template.Must(template.New("").Parse(`.:1053 {
    errors
    health
    ready
    log . {combined} {
        class denial error
    }
    kubernetes {{ .Domain }} in-addr.arpa ip6.arpa {
      pods verified
{{- if .Upstreams }}
      fallthrough in-addr.arpa ip6.arpa
{{- end }}
    }
{{- if .Upstreams }}
    forward . {{ .Upstreams }}
{{- end }}
    prometheus :9153
    cache 30
    reload
    loadbalance
}
`))

type unboundConfigTemplate struct {
	Domain       string
	ClusterIP    string
	Upstreams    []string
	LocalControl bool
}

const unboundConfigTemplateText = `
server:
  do-daemonize: no
  interface: 0.0.0.0
  interface-automatic: yes
  access-control: 0.0.0.0/0 allow
  chroot: ""
  username: ""
  directory: "/etc/unbound"
  logfile: ""
  use-syslog: no
  log-time-ascii: yes
  log-queries: no
  log-replies: yes
  log-local-actions: yes
  log-servfail: yes
  num-threads: 4
  incoming-num-tcp: 1000
  outgoing-num-tcp: 1000
  num-queries-per-thread: 4096
  outgoing-range: 8192
  rrset-roundrobin: yes
  extended-statistics: yes
  rrset-cache-size: 256m
  rrset-cache-slabs: 4
  msg-cache-size: 256m
  msg-cache-slabs: 4
  infra-cache-slabs: 4
  key-cache-slabs: 4
  so-rcvbuf: 4m
  pidfile: "/tmp/unbound.pid"
  infra-host-ttl: 60
  prefetch: yes
  tcp-upstream: yes
  so-reuseport: yes
  local-zone: "10.in-addr.arpa." transparent
  local-zone: "168.192.in-addr.arpa." transparent
  local-zone: "16.172.in-addr.arpa." transparent
  local-zone: "17.172.in-addr.arpa." transparent
  local-zone: "18.172.in-addr.arpa." transparent
  local-zone: "19.172.in-addr.arpa." transparent
  local-zone: "20.172.in-addr.arpa." transparent
  local-zone: "21.172.in-addr.arpa." transparent
  local-zone: "22.172.in-addr.arpa." transparent
  local-zone: "23.172.in-addr.arpa." transparent
  local-zone: "24.172.in-addr.arpa." transparent
  local-zone: "25.172.in-addr.arpa." transparent
  local-zone: "26.172.in-addr.arpa." transparent
  local-zone: "27.172.in-addr.arpa." transparent
  local-zone: "28.172.in-addr.arpa." transparent
  local-zone: "29.172.in-addr.arpa." transparent
  local-zone: "30.172.in-addr.arpa." transparent
  local-zone: "31.172.in-addr.arpa." transparent
  root-hints: "/usr/local/unbound/etc/unbound/root.hints"
  trust-anchor-file: "/usr/local/unbound/etc/unbound/root.key"
  domain-insecure: "{{ .Domain }}"
  domain-insecure: "10.in-addr.arpa."
  domain-insecure: "168.192.in-addr.arpa."
  domain-insecure: "16.172.in-addr.arpa."
  domain-insecure: "17.172.in-addr.arpa."
  domain-insecure: "18.172.in-addr.arpa."
  domain-insecure: "19.172.in-addr.arpa."
  domain-insecure: "20.172.in-addr.arpa."
  domain-insecure: "21.172.in-addr.arpa."
  domain-insecure: "22.172.in-addr.arpa."
  domain-insecure: "23.172.in-addr.arpa."
  domain-insecure: "24.172.in-addr.arpa."
  domain-insecure: "25.172.in-addr.arpa."
  domain-insecure: "26.172.in-addr.arpa."
  domain-insecure: "27.172.in-addr.arpa."
  domain-insecure: "28.172.in-addr.arpa."
  domain-insecure: "29.172.in-addr.arpa."
  domain-insecure: "30.172.in-addr.arpa."
  domain-insecure: "31.172.in-addr.arpa."
remote-control:
  control-enable: yes
  control-interface: {{ if .LocalControl }} /var/run/unbound/unbound.sock {{ else }} 127.0.0.1 {{ end }}
  control-use-cert: no
stub-zone:
  name: "{{ .Domain }}"
  stub-addr: {{ .ClusterIP }}
forward-zone:
  name: "in-addr.arpa."
  forward-addr: {{ .ClusterIP }}
forward-zone:
  name: "ip6.arpa."
  forward-addr: {{ .ClusterIP }}
{{- if .Upstreams }}
forward-zone:
  name: "."
  {{- range .Upstreams }}
  forward-addr: {{ . }}
  {{- end }}
{{- end }}
`

func corefile(domain string, servers []string) string {
	buf := new(bytes.Buffer)
	if err := clusterDNSTemplate.Execute(buf, struct {
		Domain    string
		Upstreams string
	}{domain, strings.Join(servers, " ")}); err != nil {
		panic(err)
	}
	return buf.String()
}

func unbound(ip, domain string, servers []string, local bool) string {
	tmpl := template.Must(template.New("").Parse(unboundConfigTemplateText))
	buf := new(bytes.Buffer)
	if err := tmpl.Execute(buf, unboundConfigTemplate{domain, ip, servers, local}); err != nil {
		panic(err)
	}
	return buf.String()
}

func write(name, s string) {
	if err := os.WriteFile(os.Args[1]+"/"+name, []byte(s), 0o644); err != nil {
		panic(err)
	}
	fmt.Println(name)
}

func main() {
	write("corefile-upstreams.golden", corefile("cluster.local", []string{"8.8.8.8", "1.1.1.1"}))
	write("corefile-no-upstreams.golden", corefile("neco.local", nil))
	write("unbound-upstreams.golden", unbound("10.0.0.53", "cluster.local", []string{"8.8.8.8", "1.1.1.1"}, true))
	write("unbound-no-upstreams.golden", unbound("10.68.0.10", "neco.local", nil, true))
}
