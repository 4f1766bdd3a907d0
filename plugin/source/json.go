package source

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxJSONDepth bounds nesting in registry replies; manifests nest three or
// four levels deep.
const maxJSONDepth = 32

// checkJSON rejects what two JSON parsers could read differently: duplicate
// keys (Go keeps the last, others the first), trailing data and absurd
// nesting. Registry replies are read with exact-case field names (see
// object), so keys differing only in case are distinct, as in the OCI specs.
func checkJSON(b []byte) error {
	type frame struct {
		keys    map[string]struct{} // nil for an array
		wantKey bool
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []frame
	values := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		if len(stack) == 0 {
			values++
			if values > 1 {
				return errors.New("invalid JSON: data after the top-level value")
			}
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.keys != nil {
					top.wantKey = true
				}
				if len(stack) >= maxJSONDepth {
					return fmt.Errorf("invalid JSON: nested deeper than %d", maxJSONDepth)
				}
				f := frame{wantKey: t == '{'}
				if t == '{' {
					f.keys = map[string]struct{}{}
				}
				stack = append(stack, f)
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.keys != nil && top.wantKey {
				if _, dup := top.keys[t]; dup {
					return fmt.Errorf("invalid JSON: duplicate key %q", t)
				}
				top.keys[t] = struct{}{}
				top.wantKey = false
				continue
			}
			if top != nil && top.keys != nil {
				top.wantKey = true
			}
		default:
			if top != nil && top.keys != nil {
				top.wantKey = true
			}
		}
	}
	if values == 0 {
		return errors.New("invalid JSON: empty document")
	}
	return nil
}

// object is a JSON object read with exact-case keys. encoding/json matches
// struct fields case-insensitively, so {"mediaType":…,"MediaType":…} would be
// read differently by Go and by a registry; reading fields by exact name
// avoids that.
type object map[string]json.RawMessage

func decodeObject(raw json.RawMessage) (object, error) {
	if !isJSONObject(raw) {
		return nil, errors.New("not a JSON object")
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	return o, nil
}

func isJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// has reports whether key is present with a non-null value.
func (o object) has(key string) bool {
	raw, ok := o[key]
	return ok && !isNull(raw)
}

func (o object) str(key string) (string, error) {
	var s string
	if !o.has(key) {
		return "", nil
	}
	if err := json.Unmarshal(o[key], &s); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}

func (o object) int64(key string) (int64, bool, error) {
	var n int64
	if !o.has(key) {
		return 0, false, nil
	}
	if err := json.Unmarshal(o[key], &n); err != nil {
		return 0, false, fmt.Errorf("%s: %w", key, err)
	}
	return n, true, nil
}

func (o object) obj(key string) (object, error) {
	if !o.has(key) {
		return nil, nil
	}
	v, err := decodeObject(o[key])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return v, nil
}

func (o object) array(key string) ([]json.RawMessage, error) {
	if !o.has(key) {
		return nil, nil
	}
	var a []json.RawMessage
	if err := json.Unmarshal(o[key], &a); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return a, nil
}

func (o object) stringMap(key string) (map[string]string, error) {
	if !o.has(key) {
		return nil, nil
	}
	if !isJSONObject(o[key]) {
		return nil, fmt.Errorf("%s: not a JSON object", key)
	}
	var m map[string]string
	if err := json.Unmarshal(o[key], &m); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return m, nil
}

// strings reads an optional array of strings.
func (o object) strings(key string) ([]string, error) {
	if !o.has(key) {
		return nil, nil
	}
	var a []string
	if err := json.Unmarshal(o[key], &a); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return a, nil
}
