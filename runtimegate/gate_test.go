package runtimegate

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recordChecker is the daemon's contract in its simplest form: answer
// containers from records, refuse the rest.
type recordChecker struct{ r *Records }

func (c recordChecker) Check(_ context.Context, req Request) Answer {
	rec, ok := c.r.Take(req.ID)
	if !ok {
		return Answer{Reason: "no record"}
	}
	if rec.Image != req.Image {
		return Answer{Reason: "record for image " + rec.Image}
	}
	return Answer{Allowed: rec.Allowed, Reason: rec.Reason}
}

func (c recordChecker) Status() Status { return Status{Records: c.r.Len()} }

// serve starts a Server for c on a socket in a fresh folder.
func serve(t *testing.T, c Checker) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "g", "gate.sock")
	srv, err := Listen(sock, c, func(err error) { t.Logf("server: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// bundle writes a bundle whose spec carries ann.
func bundle(t *testing.T, ann map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	spec, err := json.Marshal(map[string]any{"ociVersion": "1.2.0", "annotations": ann})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), spec, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func containerAnn(image string) map[string]string {
	return map[string]string{
		AnnotationContainerType: KindContainer, AnnotationSandboxID: "pod1", AnnotationSandboxNamespace: "default",
		AnnotationSandboxName: "web", AnnotationContainerName: "app", AnnotationImageName: image,
	}
}

func TestGateDecide(t *testing.T) {
	const signed, unsigned = "reg.example/app/signed:v1", "reg.example/app/unsigned:v1"
	recs := NewRecords(0, 0)
	sock := serve(t, recordChecker{recs})

	// A daemon that accepts and never answers: a stopped (SIGSTOP) or
	// starved sealgate.
	hungSock := filepath.Join(t.TempDir(), "hung.sock")
	hung, err := net.Listen("unix", hungSock)
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	malformed := t.TempDir()
	if err := os.WriteFile(filepath.Join(malformed, "config.json"), []byte(`{"annotations": {"a": 1`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		socket string
		record *Record
		inv    Invocation
		allow  bool
		want   string
	}{
		{name: "allowed record", socket: sock, record: &Record{Image: signed, Allowed: true},
			inv: Invocation{Command: "create", ID: "c1", Bundle: bundle(t, containerAnn(signed))}, allow: true},
		{name: "denied record", socket: sock, record: &Record{Image: unsigned, Reason: "sealgate: denied (rule apps): no signatures found"},
			inv: Invocation{Command: "create", ID: "c1", Bundle: bundle(t, containerAnn(unsigned))}, want: "no signatures found"},
		{name: "no record", socket: sock,
			inv: Invocation{Command: "create", ID: "c2", Bundle: bundle(t, containerAnn(unsigned))}, want: "no record"},
		{name: "record for another image", socket: sock, record: &Record{Image: signed, Allowed: true},
			inv: Invocation{Command: "create", ID: "c1", Bundle: bundle(t, containerAnn(unsigned))}, want: "record for image " + signed},
		{name: "no daemon", socket: filepath.Join(t.TempDir(), "absent.sock"),
			inv: Invocation{Command: "create", ID: "c3", Bundle: bundle(t, containerAnn(signed))}, want: "sealgate did not answer"},
		{name: "hung daemon", socket: hungSock,
			inv: Invocation{Command: "create", ID: "c4", Bundle: bundle(t, containerAnn(signed))}, want: "sealgate did not answer"},
		{name: "malformed spec", socket: sock, record: &Record{Image: signed, Allowed: true},
			inv: Invocation{Command: "create", ID: "c1", Bundle: malformed}, want: "read the container's spec"},
		{name: "missing spec", socket: sock, record: &Record{Image: signed, Allowed: true},
			inv: Invocation{Command: "create", ID: "c1", Bundle: t.TempDir()}, want: "read the container's spec"},
		{name: "not a create", socket: filepath.Join(t.TempDir(), "absent.sock"),
			inv: Invocation{Command: "delete", ID: "c1"}, allow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.record != nil {
				recs.Put("c1", *tt.record)
			}
			start := time.Now()
			v := Gate{Socket: tt.socket, Timeout: 300 * time.Millisecond}.Decide(tt.inv)
			if v.Allowed != tt.allow {
				t.Fatalf("Decide = %+v, want allowed %v", v, tt.allow)
			}
			if !tt.allow && (!strings.Contains(v.Message, tt.want) || !strings.HasPrefix(v.Message, "sealgate runtime gate: refused")) {
				t.Errorf("refusal %q: want it to name sealgate and say %q", v.Message, tt.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Decide took %v: the timeout does not bound it", took)
			}
		})
	}
}

func TestEscapeWhenAbsent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "gate.sock")
	ann := containerAnn("reg.example/static:v1")
	ann[EscapeAnnotation] = "true"
	v := Gate{Socket: sock, Timeout: 100 * time.Millisecond}.Decide(Invocation{Command: "create", ID: "static1", Bundle: bundle(t, ann)})
	if !v.Allowed || !strings.Contains(v.Message, EscapeAnnotation) {
		t.Fatalf("escape with sealgate absent: %+v, want allowed with a message naming the annotation", v)
	}
	got, errs := TakeEscapes(sock)
	if len(errs) > 0 || len(got) != 1 || got[0].ID != "static1" || got[0].Image != "reg.example/static:v1" || got[0].Pod != "web" {
		t.Fatalf("TakeEscapes = %+v, %v; want the one note for static1", got, errs)
	}
	if again, _ := TakeEscapes(sock); len(again) != 0 {
		t.Errorf("notes are read once; second read got %+v", again)
	}
}

func TestEscapeIgnoredWhenDaemonAnswers(t *testing.T) {
	sock := serve(t, recordChecker{NewRecords(0, 0)})
	ann := containerAnn("reg.example/static:v1")
	ann[EscapeAnnotation] = "true"
	v := Gate{Socket: sock, Timeout: time.Second}.Decide(Invocation{Command: "create", ID: "static2", Bundle: bundle(t, ann)})
	if v.Allowed {
		t.Fatalf("escape annotation overrode a daemon that answered: %+v", v)
	}
}

func TestStatus(t *testing.T) {
	recs := NewRecords(0, 0)
	recs.Put("x", Record{Image: "i"})
	sock := serve(t, recordChecker{recs})
	a, err := Ask(sock, Request{Op: OpStatus}, time.Second)
	if err != nil || a.Status == nil || a.Status.Records != 1 {
		t.Fatalf("status = %+v, %v; want 1 record", a, err)
	}
	a, err = Ask(sock, Request{Op: "nonsense"}, time.Second)
	if err != nil || a.Allowed {
		t.Fatalf("unknown op = %+v, %v; want a refusal", a, err)
	}
}

func TestRecords(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRecords(time.Minute, 2)
	r.now = func() time.Time { return now }
	r.Put("a", Record{Image: "a"})
	now = now.Add(time.Second)
	r.Put("b", Record{Image: "b"})
	now = now.Add(time.Second)
	r.Put("c", Record{Image: "c"}) // evicts a, the oldest
	if _, ok := r.Take("a"); ok {
		t.Error("a survived eviction")
	}
	if rec, ok := r.Take("b"); !ok || rec.Image != "b" {
		t.Errorf("Take(b) = %+v, %v", rec, ok)
	}
	if _, ok := r.Take("b"); ok {
		t.Error("a record is used once")
	}
	now = now.Add(2 * time.Minute)
	if _, ok := r.Take("c"); ok {
		t.Error("an expired record was used")
	}
}
