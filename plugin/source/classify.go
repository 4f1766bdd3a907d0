package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// outcome is what one host's answer means for trying the next one.
type outcome int

const (
	// outcomeFound: the host answered.
	outcomeFound outcome = iota
	// outcomeNotFound: the host does not have it (404, MANIFEST_UNKNOWN,
	// NAME_UNKNOWN, BLOB_UNKNOWN).
	outcomeNotFound
	// outcomeUnreachable: no usable answer: connection refused or reset,
	// DNS failure, timeout, or a server error (5xx, 408, 429), which says
	// the registry cannot serve now rather than what it holds.
	outcomeUnreachable
	// outcomeFailed: any other error: authentication (401, 403), TLS
	// certificate problems, limits, malformed or mismatching content.
	outcomeFailed
)

func classify(err error) outcome {
	if err == nil {
		return outcomeFound
	}
	if errors.Is(err, ErrLimit) || errors.Is(err, context.Canceled) {
		return outcomeFailed
	}
	if errors.Is(err, errNoReferrers) {
		return outcomeNotFound
	}
	if errors.Is(err, errRequestTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return outcomeUnreachable
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return classifyStatus(terr)
	}
	// Certificate and TLS protocol failures are configuration or security
	// problems, not an outage: say so instead of serving offline.
	var (
		certErr     *tls.CertificateVerificationError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		alert       tls.AlertError
		recordErr   tls.RecordHeaderError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) ||
		errors.As(err, &invalidErr) || errors.As(err, &alert) || errors.As(err, &recordErr) {
		return outcomeFailed
	}
	if strings.Contains(err.Error(), "TLS handshake timeout") {
		return outcomeUnreachable
	}
	var (
		netErr net.Error
		dnsErr *net.DNSError
		opErr  *net.OpError
	)
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		return outcomeUnreachable
	case errors.As(err, &netErr) && netErr.Timeout():
		return outcomeUnreachable
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return outcomeUnreachable
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		// The server hung up mid-reply.
		return outcomeUnreachable
	}
	return outcomeFailed
}

func classifyStatus(terr *transport.Error) outcome {
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
			return outcomeNotFound
		}
	}
	switch {
	case terr.StatusCode == http.StatusNotFound:
		return outcomeNotFound
	case terr.StatusCode >= 500, terr.StatusCode == http.StatusRequestTimeout,
		terr.StatusCode == http.StatusTooManyRequests:
		return outcomeUnreachable
	}
	return outcomeFailed
}

// hostErrors lists what each host answered, on one line.
type hostErrors []error

func (e hostErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e hostErrors) Unwrap() []error { return e }

// summarize turns the answers of every host tried into one error, the way
// containerd picks the most relevant one: every host said "not found" ->
// ErrNotFound; any host failed in a way that is not an outage -> the hosts'
// errors, which wrap no sentinel of ours but what a failure itself wraps
// (ErrLimit, say); otherwise (some or all unreachable, the rest not found) -> ErrUnreachable,
// because a host that could not be asked might have had it.
func summarize(errs hostErrors, kinds []outcome) error {
	failed, notFound, unreachable := 0, 0, 0
	for _, k := range kinds {
		switch k {
		case outcomeNotFound:
			notFound++
		case outcomeUnreachable:
			unreachable++
		case outcomeFailed:
			failed++
		}
	}
	switch {
	case failed > 0:
		return errs
	case unreachable > 0:
		return fmt.Errorf("%w: %w", ErrUnreachable, errs)
	default:
		return fmt.Errorf("%w: %w", ErrNotFound, errs)
	}
}
