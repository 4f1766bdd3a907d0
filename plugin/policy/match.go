package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Image is a container image reference split the way rules match it: the
// repository with its registry made explicit, so that "nginx" and
// "docker.io/library/nginx" can never be told apart by a pattern.
type Image struct {
	// Repository is normalised: "docker.io/library/nginx", "quay.io/x/y",
	// "127.0.0.1:5000/app". Docker Hub is always "docker.io".
	Repository string
	// Tag is empty when the reference names a digest and no tag.
	Tag string
	// Digest is "algorithm:hex", empty when the reference has none.
	Digest string
	// Location is the repository as the reference spells its registry
	// ("localhost:5000/app"), for reaching it the way the runtime does
	// (its hosts.toml is looked up by that name). Rules and verdicts use
	// Repository, the canonical spelling.
	Location string
}

// maxRefLen bounds references; real ones are far shorter (a repository is
// at most 255 characters, a tag 128, a sha512 digest 135).
const maxRefLen = 1024

// dockerHub is how Repository names Docker Hub; go-containerregistry says
// "index.docker.io", users and containerd say "docker.io".
const dockerHub = "docker.io"

// ParseImage splits a reference as the container runtime reports it.
// "nginx" becomes {docker.io/library/nginx, latest, ""}; a reference with a
// digest and no tag gets no tag; one with both keeps both. A bare image ID
// ("sha256:…") is refused: it names no repository a rule could match.
func ParseImage(ref string) (Image, error) {
	if ref == "" {
		return Image{}, errors.New("empty image reference")
	}
	if len(ref) > maxRefLen {
		return Image{}, fmt.Errorf("image reference longer than %d characters", maxRefLen)
	}
	if isImageID(ref) {
		return Image{}, errors.New("a bare image ID names no repository; use a reference such as registry/repository@" + ref)
	}
	base, dig, hasDigest := strings.Cut(ref, "@")
	var img Image
	var repo name.Repository
	if hasDigest {
		d, err := name.NewDigest(ref, name.WeakValidation)
		if err != nil {
			return Image{}, err
		}
		repo, img.Digest = d.Context(), dig
		if explicitTag(base) {
			t, err := name.NewTag(base, name.WeakValidation)
			if err != nil {
				return Image{}, err
			}
			img.Tag = t.TagStr()
		}
	} else {
		t, err := name.NewTag(ref, name.WeakValidation)
		if err != nil {
			return Image{}, err
		}
		repo, img.Tag = t.Context(), t.TagStr()
	}
	if len(repo.RepositoryStr()) > 255 {
		// Docker Hub's implicit "library/" can push a name over the limit;
		// such a repository could not be named again.
		return Image{}, errors.New("repository longer than 255 characters")
	}
	registry, err := CanonicalRegistry(repo.RegistryStr())
	if err != nil {
		return Image{}, err
	}
	path := repo.RepositoryStr()
	if registry == dockerHub && !strings.Contains(path, "/") {
		// docker.io/nginx, registry-1.docker.io/nginx: Docker Hub's
		// official images live under library/.
		path = "library/" + path
	}
	img.Repository = registry + "/" + path
	img.Location = repo.Name()
	return img, nil
}

// explicitTag reports whether a name (no digest) carries a ":tag" after its
// last path segment separator, as opposed to only a registry port.
func explicitTag(s string) bool {
	return strings.LastIndexByte(s, ':') > strings.LastIndexByte(s, '/')
}

func isImageID(s string) bool {
	const prefix = "sha256:"
	if len(s) != len(prefix)+64 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		if !isHexLower(s[i]) {
			return false
		}
	}
	return true
}

func isHexLower(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// String formats the image as "repository[:tag][@digest]".
func (i Image) String() string {
	s := i.Repository
	if i.Tag != "" {
		s += ":" + i.Tag
	}
	if i.Digest != "" {
		s += "@" + i.Digest
	}
	return s
}

// Match returns the first rule, in file order, whose image patterns and
// namespaces match, or nil when none does (the policy default applies).
// It does not allocate for a policy returned by Parse.
func (p *Policy) Match(img Image, namespace string) *Rule {
	for _, r := range p.Rules {
		if r.Matches(img, namespace) {
			return r
		}
	}
	return nil
}

// Matches reports whether the rule applies to img in namespace: the
// namespace matches one of its namespace globs (or it has none), and one of
// its image patterns matches the bare repository, "repository:tag" or
// "repository@digest".
func (r *Rule) Matches(img Image, namespace string) bool {
	images, namespaces := r.images, r.namespaces
	if len(images) != len(r.Images) || len(namespaces) != len(r.Namespaces) {
		// A Rule built by hand rather than by Parse: compile on the fly.
		// Patterns that do not compile match nothing.
		images, namespaces = compileAll(r.Images, imageGlob), compileAll(r.Namespaces, namespaceGlob)
	}
	if len(r.Namespaces) > 0 {
		ok := false
		for _, g := range namespaces {
			if g.match(namespace, 0, "") {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, g := range images {
		if g.match(img.Repository, 0, "") ||
			img.Tag != "" && g.match(img.Repository, ':', img.Tag) ||
			img.Digest != "" && g.match(img.Repository, '@', img.Digest) {
			return true
		}
	}
	return false
}

func compileAll(patterns []string, compile func(string) (*glob, error)) []*glob {
	out := make([]*glob, 0, len(patterns))
	for _, s := range patterns {
		if g, err := compile(s); err == nil {
			out = append(out, g)
		}
	}
	return out
}

// imageGlob normalises and compiles an image pattern.
func imageGlob(pattern string) (*glob, error) {
	norm, err := normalisePattern(pattern)
	if err != nil {
		return nil, err
	}
	return compileGlob(norm)
}

// namespaceGlob validates and compiles a namespace pattern.
func namespaceGlob(pattern string) (*glob, error) {
	if pattern == "" {
		return nil, errors.New("empty namespace pattern; remove it, or write \"*\" for every namespace")
	}
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '*' || c == '?') {
			return nil, fmt.Errorf("character %q cannot appear in a namespace pattern; namespaces are lower-case letters, digits and '-', with * and ? as wildcards", c)
		}
	}
	if strings.Contains(pattern, "**") {
		return nil, errors.New("** in a namespace pattern; namespaces have no '/', write *")
	}
	return compileGlob(pattern)
}

// maxPattern bounds a pattern so that its matcher state fits in maxWords words.
const maxPattern = 64*maxWords - 1

// normalisePattern makes an image pattern's registry explicit, the way a
// reference is normalised, when its first path segment has no wildcard:
// "nginx:*" -> "docker.io/library/nginx:*", "myorg/app" ->
// "docker.io/myorg/app". It also rejects patterns that could never match.
func normalisePattern(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty image pattern; write one such as registry.example.com/myorg/**")
	case len(p) > maxPattern:
		return "", fmt.Errorf("image pattern longer than %d characters", maxPattern)
	case strings.Contains(p, "***"):
		return "", errors.New("*** in an image pattern; use * (within one path segment) or ** (across segments)")
	case strings.Count(p, "@") > 1:
		return "", errors.New("more than one @ in an image pattern; write repository@digest")
	}
	namePart, digestPart, hasDigest := strings.Cut(p, "@")
	repoPart, tagPart := namePart, ""
	if i := strings.LastIndexByte(namePart, ':'); i > strings.LastIndexByte(namePart, '/') {
		repoPart, tagPart = namePart[:i], namePart[i:]
	}
	if repoPart == "" {
		return "", errors.New("image pattern has no repository; write one such as docker.io/library/nginx:*")
	}
	if strings.HasPrefix(repoPart, "/") || strings.HasSuffix(repoPart, "/") || strings.Contains(repoPart, "//") {
		return "", errors.New("empty path segment in an image pattern; remove the extra /")
	}
	if tagPart == ":" {
		return "", errors.New("empty tag after ':' in an image pattern; write :* for any tag")
	}
	if hasDigest && digestPart == "" {
		return "", errors.New("empty digest after '@' in an image pattern; write @* for any digest")
	}
	// The registry is put in its canonical spelling first, as references
	// are (CanonicalRegistry), so that any spelling in a rule matches every
	// spelling in a reference.
	regEnd := -1
	if first, rest, ok := strings.Cut(repoPart, "/"); ok && !strings.ContainsAny(first, "*?") &&
		(strings.ContainsAny(first, ".:[") || strings.EqualFold(first, "localhost")) {
		canon, err := CanonicalRegistry(first)
		if err != nil {
			return "", fmt.Errorf("image pattern: %w", err)
		}
		repoPart, regEnd = canon+"/"+rest, len(canon)
	}
	for i := 0; i < len(repoPart); i++ {
		c := repoPart[i]
		switch {
		case i < regEnd && (c == '[' || c == ']'):
			// an IPv6 registry address
		case 'A' <= c && c <= 'Z':
			return "", fmt.Errorf("upper-case %q in the repository of an image pattern; registries and repositories are lower case", c)
		case !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("._-/:*?", c) >= 0):
			return "", fmt.Errorf("character %q cannot appear in an image repository; use letters, digits, . _ - / and the wildcards * ** ?", c)
		}
	}
	for _, s := range []string{tagPart, digestPart} {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-:+=*?", c) >= 0) {
				return "", fmt.Errorf("character %q cannot appear in an image tag or digest; use letters, digits, . _ - : and the wildcards * ?", c)
			}
		}
	}

	first, rest, hasSlash := strings.Cut(repoPart, "/")
	if !strings.ContainsAny(first, "*?") {
		switch {
		case !hasSlash:
			repoPart = dockerHub + "/library/" + repoPart
		case regEnd >= 0:
			if first == dockerHub && !strings.Contains(rest, "/") && !strings.Contains(rest, "**") {
				rest = "library/" + rest
			}
			repoPart = first + "/" + rest
		default:
			repoPart = dockerHub + "/" + repoPart
		}
	}
	norm := repoPart + tagPart
	if hasDigest {
		norm += "@" + digestPart
	}
	if !strings.Contains(norm, "/") && !strings.Contains(norm, "**") {
		return "", fmt.Errorf("image pattern %q can never match: references always name a registry and a repository; write e.g. docker.io/library/%s or **", p, p)
	}
	if len(norm) > maxPattern {
		return "", fmt.Errorf("image pattern longer than %d characters", maxPattern)
	}
	return norm, nil
}

// maxWords is the size of a matcher's state in 64-bit words.
const maxWords = 8

// glob is a compiled pattern: a bit-parallel NFA over its tokens (one per
// literal byte, ?, * or **), so matching is linear in the text whatever
// the pattern, and allocation-free. Bit i of the state means "i tokens
// matched so far".
type glob struct {
	pattern string
	// prefix is the literal text before the first wildcard; the matcher
	// starts after it, and a text without it is rejected at once.
	prefix  string
	literal bool // no wildcards: prefix is the whole pattern
	start   int  // token index after prefix
	n       int  // number of tokens; bit n is the accepting state
	words   int
	// class maps a byte to its row of accept: 0 for bytes the pattern does
	// not name (only ? consumes them), 1 for '/', then one per literal byte.
	class [256]uint8
	// accept[class*words+w]: tokens that consume a byte of the class and advance.
	accept []uint64
	star   [maxWords]uint64 // * tokens: stay on any byte but '/'
	dstar  [maxWords]uint64 // ** tokens: stay on any byte
	eps    [maxWords]uint64 // * and ** tokens: may match nothing
}

func compileGlob(p string) (*glob, error) {
	if len(p) > maxPattern {
		return nil, fmt.Errorf("pattern longer than %d characters", maxPattern)
	}
	if strings.Contains(p, "***") {
		return nil, errors.New("*** in a pattern; use * or **")
	}
	type tok struct {
		kind byte // 'l' literal, '?', '*', 'D' (**)
		c    byte
	}
	toks := make([]tok, 0, len(p))
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*':
			if i+1 < len(p) && p[i+1] == '*' {
				toks = append(toks, tok{kind: 'D'})
				i++
			} else {
				toks = append(toks, tok{kind: '*'})
			}
		case '?':
			toks = append(toks, tok{kind: '?'})
		default:
			toks = append(toks, tok{kind: 'l', c: p[i]})
		}
	}
	g := &glob{pattern: p, n: len(toks), words: len(toks)/64 + 1}
	classes := 2
	for _, t := range toks {
		if t.kind == 'l' && t.c != '/' && g.class[t.c] == 0 {
			if classes == 256 {
				return nil, errors.New("pattern uses too many distinct characters")
			}
			g.class[t.c] = uint8(classes)
			classes++
		}
	}
	g.class['/'] = 1
	g.accept = make([]uint64, classes*g.words)
	for g.start < len(toks) && toks[g.start].kind == 'l' {
		g.start++
	}
	g.prefix = p[:g.start]
	g.literal = g.start == len(toks)
	for i, t := range toks {
		w, bit := i/64, uint64(1)<<(i%64)
		switch t.kind {
		case 'l':
			g.accept[int(g.class[t.c])*g.words+w] |= bit
		case '?':
			for c := 0; c < classes; c++ {
				if c != 1 {
					g.accept[c*g.words+w] |= bit
				}
			}
		case '*':
			g.star[w] |= bit
			g.eps[w] |= bit
		case 'D':
			g.dstar[w] |= bit
			g.eps[w] |= bit
		}
	}
	return g, nil
}

// match reports whether the pattern matches a + sep + b, or a alone when
// sep is 0. Taking the text in parts spares Match building strings.
func (g *glob) match(a string, sep byte, b string) bool {
	total := len(a)
	if sep != 0 {
		total += 1 + len(b)
	}
	if total < len(g.prefix) {
		return false
	}
	for i := 0; i < len(g.prefix); i++ {
		if at(a, sep, b, i) != g.prefix[i] {
			return false
		}
	}
	if g.literal {
		return total == len(g.prefix)
	}
	var s [maxWords]uint64
	words := g.words
	s[g.start/64] = 1 << (g.start % 64)
	g.closure(&s)
	for i := len(g.prefix); i < total; i++ {
		c := at(a, sep, b, i)
		row := int(g.class[c]) * words
		acc := g.accept[row : row+words]
		var carry, any uint64
		for w := 0; w < words; w++ {
			adv := s[w] & acc[w]
			stay := s[w] & g.dstar[w]
			if c != '/' {
				stay |= s[w] & g.star[w]
			}
			s[w] = adv<<1 | carry | stay
			carry = adv >> 63
			any |= s[w]
		}
		if any == 0 {
			return false
		}
		g.closure(&s)
	}
	return s[g.n/64]&(1<<(g.n%64)) != 0
}

// closure lets every star token match nothing. Two star tokens are never
// adjacent ("**" is one token, "***" is refused), so one step suffices.
func (g *glob) closure(s *[maxWords]uint64) {
	var carry uint64
	for w := 0; w < g.words; w++ {
		e := s[w] & g.eps[w]
		s[w] |= e<<1 | carry
		carry = e >> 63
	}
}

func at(a string, sep byte, b string, i int) byte {
	switch {
	case i < len(a):
		return a[i]
	case i == len(a):
		return sep
	}
	return b[i-len(a)-1]
}
