package verify

import (
	"fmt"
	"strings"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/tlog"
)

// Bounds on Sigstore bundles from registries and files. A bundle holds one
// signature, a certificate and a log entry or two: a few KiB, or the size
// of the statement it carries.
const (
	// MaxBundleSize bounds a bundle document; a bigger one is refused
	// before it is parsed.
	MaxBundleSize = 1 << 20
	// maxBundleTlogEntries bounds a bundle's transparency-log entries
	// (sigstore-go allows 32; real bundles have one).
	maxBundleTlogEntries = 8
	// maxBundleTimestamps bounds a bundle's RFC 3161 timestamps.
	maxBundleTimestamps = 8
)

// bundleMediaTypePrefix starts every Sigstore bundle media type.
const bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

// parsedBundle is a bundle that parsed and passed sigstore-go's structural
// validation; nothing in it is verified yet.
type parsedBundle struct {
	b *bundle.Bundle
	// statement is the in-toto statement of a DSSE bundle, parsed
	// strictly; nil for a message signature.
	statement *Statement
	entries   []*tlog.Entry
	stamps    int
	cert      bool // signed with a certificate (keyless), not a key
}

// parseBundle parses a bundle document: at most MaxBundleSize bytes,
// protobuf JSON without unknown or duplicate fields (protojson), media type
// v0.1 to v0.3, sigstore-go's validation (content, verification material,
// inclusion promise for v0.1, inclusion proof from v0.2), bounded log
// entries and timestamps, and for DSSE exactly one signature and a strictly
// parsed in-toto statement. Errors wrap ErrBundle or ErrPayload.
func parseBundle(data []byte) (*parsedBundle, error) {
	if len(data) == 0 {
		return nil, reasonf(ErrBundle, "empty bundle")
	}
	if len(data) > MaxBundleSize {
		return nil, reasonf(ErrBundle, fmt.Sprintf("bundle of %d bytes exceeds the %d byte limit", len(data), MaxBundleSize))
	}
	b := &bundle.Bundle{Bundle: new(protobundle.Bundle)}
	if err := b.UnmarshalJSON(data); err != nil {
		return nil, reasonf(ErrBundle, "invalid Sigstore bundle: "+truncate(err.Error(), 300))
	}
	pb := &parsedBundle{b: b}
	vm := b.GetVerificationMaterial()
	if n := len(vm.GetTlogEntries()); n > maxBundleTlogEntries {
		return nil, reasonf(ErrBundle, fmt.Sprintf("invalid Sigstore bundle: %d transparency-log entries, more than %d", n, maxBundleTlogEntries))
	}
	if n := len(vm.GetTimestampVerificationData().GetRfc3161Timestamps()); n > maxBundleTimestamps {
		return nil, reasonf(ErrBundle, fmt.Sprintf("invalid Sigstore bundle: %d timestamps, more than %d", n, maxBundleTimestamps))
	}
	pb.stamps = len(vm.GetTimestampVerificationData().GetRfc3161Timestamps())
	entries, err := b.TlogEntries()
	if err != nil {
		return nil, reasonf(ErrBundle, "invalid Sigstore bundle: "+truncate(err.Error(), 300))
	}
	pb.entries = entries
	switch vm.GetContent().(type) {
	case *protobundle.VerificationMaterial_Certificate, *protobundle.VerificationMaterial_X509CertificateChain:
		pb.cert = true
	}
	if env := b.GetDsseEnvelope(); env != nil {
		if n := len(env.GetSignatures()); n != 1 {
			return nil, reasonf(ErrBundle, fmt.Sprintf("invalid Sigstore bundle: the DSSE envelope has %d signatures; a bundle carries exactly one", n))
		}
		if env.GetPayloadType() != InTotoPayloadType {
			return nil, reasonf(ErrPayload, fmt.Sprintf("DSSE payload type %q is not %s", truncate(env.GetPayloadType(), 80), InTotoPayloadType))
		}
		st, err := ParseStatement(env.GetPayload())
		if err != nil {
			return nil, err
		}
		pb.statement = st
	}
	return pb, nil
}

// checkBundleMediaType refuses a bundle whose layer claims a media type
// that is not a Sigstore bundle's (the document's own mediaType decides
// the version).
func checkBundleMediaType(mt string) error {
	if mt == "" || strings.HasPrefix(mt, bundleMediaTypePrefix) {
		return nil
	}
	return reasonf(ErrBundle, fmt.Sprintf("media type %q is not a Sigstore bundle", truncate(mt, 120)))
}

// bundleSigned prepares a parsed bundle for verification.
func bundleSigned(pb *parsedBundle) *signed {
	s := &signed{
		entity:  pb.b,
		cert:    pb.cert,
		entries: pb.entries,
		stamps:  pb.stamps,
	}
	return s
}
