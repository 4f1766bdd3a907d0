package ocimaterial

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sealgate/sealgate/internal/strictjson"
)

// MaxJSONDepth bounds nesting in registry replies; manifests nest three or
// four levels deep.
const MaxJSONDepth = 32

// CheckJSON rejects what two JSON parsers could read differently
// (strictjson: duplicate keys, invalid UTF-8, trailing data, absurd
// nesting). Registry replies are then read with exact-case field names (see
// Object), so keys differing only in case are distinct, as in the OCI specs.
func CheckJSON(b []byte) error { return strictjson.Check(b, MaxJSONDepth) }

// Object is a JSON object read with exact-case keys. encoding/json matches
// struct fields case-insensitively, so {"mediaType":…,"MediaType":…} would be
// read differently by Go and by a registry; reading fields by exact name
// avoids that.
type Object map[string]json.RawMessage

func DecodeObject(raw json.RawMessage) (Object, error) {
	if !IsJSONObject(raw) {
		return nil, errors.New("not a JSON object")
	}
	var o Object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	return o, nil
}

func IsJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

func IsNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// has reports whether key is present with a non-null value.
func (o Object) Has(key string) bool {
	raw, ok := o[key]
	return ok && !IsNull(raw)
}

func (o Object) Str(key string) (string, error) {
	var s string
	if !o.Has(key) {
		return "", nil
	}
	if err := json.Unmarshal(o[key], &s); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}

func (o Object) Int64(key string) (int64, bool, error) {
	var n int64
	if !o.Has(key) {
		return 0, false, nil
	}
	if err := json.Unmarshal(o[key], &n); err != nil {
		return 0, false, fmt.Errorf("%s: %w", key, err)
	}
	return n, true, nil
}

func (o Object) Obj(key string) (Object, error) {
	if !o.Has(key) {
		return nil, nil
	}
	v, err := DecodeObject(o[key])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return v, nil
}

func (o Object) Array(key string) ([]json.RawMessage, error) {
	if !o.Has(key) {
		return nil, nil
	}
	var a []json.RawMessage
	if err := json.Unmarshal(o[key], &a); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return a, nil
}

func (o Object) StringMap(key string) (map[string]string, error) {
	if !o.Has(key) {
		return nil, nil
	}
	if !IsJSONObject(o[key]) {
		return nil, fmt.Errorf("%s: not a JSON object", key)
	}
	var m map[string]string
	if err := json.Unmarshal(o[key], &m); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return m, nil
}

// strings reads an optional array of strings.
func (o Object) Strings(key string) ([]string, error) {
	if !o.Has(key) {
		return nil, nil
	}
	var a []string
	if err := json.Unmarshal(o[key], &a); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return a, nil
}
