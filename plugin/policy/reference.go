package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// dockerHubAliases are the registry names that reach Docker Hub, the way
// containerd and the Docker CLI resolve them.
var dockerHubAliases = map[string]bool{
	"docker.io":               true,
	"index.docker.io":         true,
	"registry-1.docker.io":    true,
	"registry.hub.docker.com": true,
}

// CanonicalRegistry returns the one spelling of a registry host[:port]
// that every spelling the runtime would pull from the same place shares:
// lower case, no trailing dot, no default https port (443), a port without
// leading zeros, an IP address in its canonical form (an IPv4-mapped IPv6
// address as IPv4, IPv6 in brackets, compressed), "localhost" as
// 127.0.0.1, and Docker Hub's aliases as "docker.io". Rules and references
// are both put in this form before they meet, so no spelling escapes a
// rule. A host that looks numeric but is not an IP address in a form every
// resolver reads the same ("127.1", "0177.0.0.1") is an error: resolvers
// disagree on what it names.
func CanonicalRegistry(reg string) (string, error) {
	for i := 0; i < len(reg); i++ {
		if c := reg[i]; c >= 0x80 || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			return "", fmt.Errorf("registry %q: character %q cannot appear in a registry host", reg, c)
		}
	}
	host, port, err := splitHostPort(strings.ToLower(reg))
	if err != nil {
		return "", err
	}
	if trimmed := strings.TrimSuffix(host, "."); trimmed != host {
		if !strings.Contains(trimmed, ".") && port == "" && trimmed != "localhost" {
			// "registry./app" without its dot would read as a
			// repository path, not a registry.
			return "", fmt.Errorf("registry %q: a single-label host with a trailing dot; write it without the dot and with a port, or its full name", reg)
		}
		host = trimmed
	}
	if host == "" || strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return "", fmt.Errorf("registry %q: an empty label in the host name", reg)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return "", fmt.Errorf("registry %q: port %q is not a number from 1 to 65535", reg, port)
		}
		port = strconv.FormatUint(n, 10)
		if n == 443 {
			port = ""
		}
	}
	switch {
	case host == "localhost":
		host = "127.0.0.1"
	case strings.HasPrefix(host, "["):
		addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
		if err != nil || !strings.HasSuffix(host, "]") || addr.Zone() != "" {
			return "", fmt.Errorf("registry %q: %q is not an IPv6 address", reg, host)
		}
		addr = addr.Unmap()
		host = addr.String()
		if addr.Is6() {
			host = "[" + host + "]"
		}
	case numericHost(host):
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is4() {
			return "", fmt.Errorf("registry %q: %q is not an IPv4 address in dotted decimal without leading zeros; write the address as a.b.c.d", reg, host)
		}
		host = addr.String()
	}
	if dockerHubAliases[host] && port == "" {
		return dockerHub, nil
	}
	if port != "" {
		return host + ":" + port, nil
	}
	return host, nil
}

// splitHostPort splits host[:port] and [ipv6][:port].
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("registry %q: unclosed [", s)
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, "", nil
		}
		if !strings.HasPrefix(rest, ":") || rest == ":" {
			return "", "", fmt.Errorf("registry %q: unexpected %q after the address", s, rest)
		}
		return host, rest[1:], nil
	}
	if strings.Count(s, ":") > 1 {
		return "", "", errors.New("registry " + strconv.Quote(s) + ": an IPv6 address must be in brackets")
	}
	host, port, hasPort := strings.Cut(s, ":")
	if hasPort && port == "" {
		return "", "", fmt.Errorf("registry %q: empty port after ':'", s)
	}
	return host, port, nil
}

// numericHost reports whether every label of host is digits (or 0x hex):
// something some resolver would read as an IPv4 address.
func numericHost(host string) bool {
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return false
		}
		l := label
		if strings.HasPrefix(l, "0x") {
			l = l[2:]
			if l == "" {
				return false
			}
			for i := 0; i < len(l); i++ {
				if !isHexLower(l[i]) {
					return false
				}
			}
			continue
		}
		for i := 0; i < len(l); i++ {
			if l[i] < '0' || l[i] > '9' {
				return false
			}
		}
	}
	return true
}
