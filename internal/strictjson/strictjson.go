// Package strictjson is the one JSON reader for everything sealgate reads
// from an attacker's reach: registry replies, bundles, signature payloads,
// attestation statements, the seal record, sealed TPM objects, the runtime's
// spec and the runtime gate's messages.
//
// Two JSON parsers can read one document differently: encoding/json keeps
// the last of two equal keys where others keep the first, matches struct
// fields case-insensitively, skips unknown fields and accepts invalid UTF-8
// in strings. A signature checked by one reading and enforced by another is
// a bypass, so every reading here refuses what parsers disagree on:
// duplicate keys, keys that differ from a field's name only in case,
// unknown fields (Unmarshal), invalid UTF-8, trailing data and nesting
// beyond a bound.
//
// The package imports only the standard library, so that the runtime gate
// (sealgate-runc) links it at no cost.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every error of this package.
var ErrInvalid = errors.New("invalid JSON")

// DefaultMaxDepth bounds nesting when a caller gives 0; OCI manifests and
// Sigstore bundles nest well under ten levels.
const DefaultMaxDepth = 32

// Options shape Decode.
type Options struct {
	// MaxDepth bounds nesting; 0 means DefaultMaxDepth.
	MaxDepth int
	// Floats makes numbers float64 (the form CEL expects) instead of
	// json.Number; a number a float64 cannot hold is an error.
	Floats bool
}

// Decode reads exactly one JSON value from b into generic values (objects
// map[string]any, arrays []any, numbers json.Number or float64), refusing
// invalid UTF-8, duplicate keys, nesting deeper than the bound and trailing
// data. Errors wrap ErrInvalid and name the path of the offending value.
func Decode(b []byte, o Options) (any, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	r := reader{dec: dec, o: o}
	doc, err := r.value(0, "")
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the top-level value", ErrInvalid)
	}
	return doc, nil
}

// Check is Decode without the result: b is one JSON value that every
// parser reads the same way.
func Check(b []byte, maxDepth int) error {
	_, err := Decode(b, Options{MaxDepth: maxDepth})
	return err
}

// Unmarshal checks b as Decode does, refuses an object key that is not
// exactly the name of a field of v's type (unknown, or differing only in
// case), and decodes b into v. Types that decode themselves
// (json.Unmarshaler, json.RawMessage) and maps of them are checked for
// duplicates only.
func Unmarshal(b []byte, v any, maxDepth int) error {
	doc, err := Decode(b, Options{MaxDepth: maxDepth})
	if err != nil {
		return err
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictjson: Unmarshal needs a non-nil pointer, got %T", v)
	}
	if err := fields(doc, rv.Type().Elem(), ""); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	rawType         = reflect.TypeFor[json.RawMessage]()
)

// fields checks that every object key in doc names a field of t exactly.
func fields(doc any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawType || reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil // a type mismatch; encoding/json reports it
		}
		names := fieldNames(t)
		for k, v := range obj {
			ft, ok := names[k]
			if !ok {
				return fmt.Errorf("%w: unknown field %q%s (field names are case-sensitive)", ErrInvalid, truncate(k, 80), at(path))
			}
			if err := fields(v, ft, join(path, k)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if obj, ok := doc.(map[string]any); ok {
			for k, v := range obj {
				if err := fields(v, t.Elem(), join(path, k)); err != nil {
					return err
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if arr, ok := doc.([]any); ok {
			for i, v := range arr {
				if err := fields(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// fieldNames maps the JSON names of t's fields (embedded structs
// flattened) to their types, as encoding/json names them.
func fieldNames(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range fieldNames(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

type reader struct {
	dec *json.Decoder
	o   Options
}

func (r *reader) value(depth int, path string) (any, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, tokenErr(err)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		if n, isNum := tok.(json.Number); isNum && r.o.Floats {
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				return nil, fmt.Errorf("%w: number %s out of range%s", ErrInvalid, truncate(string(n), 40), at(path))
			}
			return f, nil
		}
		return tok, nil
	}
	if depth >= r.o.MaxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d levels", ErrInvalid, r.o.MaxDepth)
	}
	switch delim {
	case '{':
		obj := map[string]any{}
		for r.dec.More() {
			kt, err := r.dec.Token()
			if err != nil {
				return nil, tokenErr(err)
			}
			key, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("%w: malformed object%s", ErrInvalid, at(path))
			}
			if _, dup := obj[key]; dup {
				return nil, fmt.Errorf("%w: duplicate key %q%s", ErrInvalid, truncate(key, 80), at(path))
			}
			v, err := r.value(depth+1, join(path, key))
			if err != nil {
				return nil, err
			}
			obj[key] = v
		}
		if _, err := r.dec.Token(); err != nil { // '}'
			return nil, tokenErr(err)
		}
		return obj, nil
	case '[':
		arr := []any{}
		for i := 0; r.dec.More(); i++ {
			v, err := r.value(depth+1, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := r.dec.Token(); err != nil { // ']'
			return nil, tokenErr(err)
		}
		return arr, nil
	}
	return nil, fmt.Errorf("%w: malformed%s", ErrInvalid, at(path))
}

func tokenErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated", ErrInvalid)
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

func join(path, key string) string {
	if path == "" {
		return truncate(key, 80)
	}
	return path + "." + truncate(key, 80)
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
