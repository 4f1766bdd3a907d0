package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// statement decodes a testdata statement the way the verifier does
// (encoding/json into map[string]any).
func statement(t testing.TB, file string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func mustCondition(t testing.TB, expr string) *Condition {
	t.Helper()
	c, err := compileCondition(expr)
	if err != nil {
		t.Fatalf("compile %q: %v", expr, err)
	}
	c.Line = 12
	return c
}

const githubWorkflowV1 = "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"

func TestConditionEval(t *testing.T) {
	slsa := statement(t, "testdata/statements/slsa-v1.json")
	noPredicate := statement(t, "testdata/statements/slsa-v1.json")
	delete(noPredicate, "predicate")
	nullPredicate := statement(t, "testdata/statements/slsa-v1.json")
	nullPredicate["predicate"] = nil
	numbers := map[string]any{"predicateType": "x", "subject": []any{}, "predicate": map[string]any{"n": 2.0, "f": 0.5}}

	for _, tc := range []struct {
		name string
		expr string
		st   map[string]any
		want bool
		err  string // substring of the error; "" for none
	}{
		{"build type matches", `predicate.buildDefinition.buildType == "` + githubWorkflowV1 + `"`, slsa, true, ""},
		{"build type differs", `predicate.buildDefinition.buildType == "https://example.com/other"`, slsa, false, ""},
		{"predicateType", `predicateType == "https://slsa.dev/provenance/v1"`, slsa, true, ""},
		{"subject exists", `subject.exists(s, s.name == "registry.example.com/myorg/app" && s.digest.sha256.size() == 64)`, slsa, true, ""},
		{"repository and ref", `predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/myorg/app" &&
			predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/v")`, slsa, true, ""},
		{"builder regexp", `predicate.runDetails.builder.id.matches("^https://github\\.com/slsa-framework/slsa-github-generator/")`, slsa, true, ""},
		{"dependencies all", `predicate.buildDefinition.resolvedDependencies.all(d, d.uri.startsWith("git+https://github.com/myorg/"))`, slsa, true, ""},
		{"has() on an absent field", `has(predicate.buildDefinition.systemParameters)`, slsa, false, ""},
		{"JSON numbers compare with ints", `predicate.n > 1 && predicate.n == 2 && predicate.f < 1`, numbers, true, ""},

		{"missing field", `predicate.buildDefinition.nope == "x"`, slsa, false, "no such key: nope"},
		{"statement without predicate", `predicate.buildDefinition.buildType == "` + githubWorkflowV1 + `"`, noPredicate, false, "no such attribute"},
		{"null predicate", `predicate.buildDefinition.buildType == "x"`, nullPredicate, false, "no such key: buildDefinition"},
		{"dyn result not a bool", `predicate.buildDefinition.buildType`, slsa, false, "evaluated to string, not a bool"},
		{"wrong operand type at run time", `predicate.buildDefinition.buildType > 1`, slsa, false, "no such overload"},
		{"subject not a list", `subject.exists(s, true)`, map[string]any{"subject": "x"}, false, "iterable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCondition(t, tc.expr)
			got, err := c.Eval(context.Background(), tc.st)
			if tc.err == "" && tc.want {
				if err != nil || !got {
					t.Fatalf("Eval = %v, %v; want true", got, err)
				}
				return
			}
			if got {
				t.Fatalf("Eval = true, %v; want false or an error", err)
			}
			if tc.err != "" {
				if !errors.Is(err, ErrCondition) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v; want ErrCondition with %q", err, tc.err)
				}
				if !strings.Contains(err.Error(), "(policy line 12)") {
					t.Errorf("err = %v; want the policy line", err)
				}
			}
			if err != nil && !errors.Is(err, ErrCondition) {
				t.Errorf("err = %v does not wrap ErrCondition", err)
			}
		})
	}
}

// bigSubject is a statement whose subject list has n entries.
func bigSubject(n int) map[string]any {
	subject := make([]any, n)
	for i := range subject {
		subject[i] = map[string]any{"name": "x", "digest": map[string]any{"sha256": strings.Repeat("a", 64)}}
	}
	return map[string]any{"predicateType": "p", "subject": subject, "predicate": map[string]any{}}
}

// TestConditionCostLimit: a quadratic loop over a big list must stop at
// the cost limit, promptly, not run to completion.
func TestConditionCostLimit(t *testing.T) {
	c := mustCondition(t, `subject.all(x, subject.all(y, x.name == y.name))`)
	ok, err := c.Eval(context.Background(), bigSubject(10))
	if err != nil || !ok {
		t.Fatalf("small list: Eval = %v, %v; want true", ok, err)
	}

	start := time.Now()
	ok, err = c.Eval(context.Background(), bigSubject(5000)) // 25M iterations without the limit
	if ok || !errors.Is(err, ErrCondition) || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("Eval = %v, %v; want ErrCondition for the cost limit", ok, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Eval took %v to hit the cost limit", d)
	}
	if !strings.Contains(err.Error(), `"subject.all(x, subject.all(y, x.name == y.name))"`) {
		t.Errorf("err = %v; want the expression in the message", err)
	}
}

// TestConditionContext: a done context stops a loop within the cost limit.
func TestConditionContext(t *testing.T) {
	c := mustCondition(t, `subject.all(x, x.name == "x")`)
	st := bigSubject(10000) // within the cost limit
	if ok, err := c.Eval(context.Background(), st); err != nil || !ok {
		t.Fatalf("live context: Eval = %v, %v; want true", ok, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok, err := c.Eval(ctx, st)
	if ok || !errors.Is(err, ErrCondition) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Eval = %v, %v; want ErrCondition wrapping context.Canceled", ok, err)
	}
}

func TestConditionNil(t *testing.T) {
	for _, c := range []*Condition{nil, {Expr: "true"}} {
		if _, err := c.Eval(context.Background(), nil); !errors.Is(err, ErrCondition) {
			t.Errorf("Eval on %+v: err = %v; want ErrCondition", c, err)
		}
	}
}

// TestConditionLongExprMessage: an error quotes a long expression
// shortened.
func TestConditionLongExprMessage(t *testing.T) {
	expr := "predicate.nope == \"" + strings.Repeat("x", 500) + "\""
	_, err := mustCondition(t, expr).Eval(context.Background(), map[string]any{"predicate": map[string]any{}})
	if !errors.Is(err, ErrCondition) || len(err.Error()) > 400 || !strings.Contains(err.Error(), "…") {
		t.Errorf("err = %v", err)
	}
}

// TestConditionConcurrent evaluates one condition from many goroutines, as
// concurrent decisions do (run with -race).
func TestConditionConcurrent(t *testing.T) {
	c := mustCondition(t, `predicate.buildDefinition.buildType == "`+githubWorkflowV1+`"`)
	slsa := statement(t, "testdata/statements/slsa-v1.json")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if ok, err := c.Eval(context.Background(), slsa); err != nil || !ok {
					errs <- errors.Join(err, errors.New("not true"))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestConditionCompile covers what compiles: bool and dyn results pass,
// other types and unknown names do not (line handling is in
// TestParseErrors).
func TestConditionCompile(t *testing.T) {
	for _, tc := range []struct {
		expr string
		ok   bool
	}{
		{`true`, true},
		{`predicate.x`, true}, // dyn: checked at evaluation
		{`predicate.x == 1 || predicateType.endsWith("/v1")`, true},
		{`size(subject) > 0`, true},
		{`1`, false},
		{`predicateType`, false},
		{`subject`, false},
		{`predicate.x.matches("(")`, false}, // constant regexp checked at load
		{`foo`, false},
		{`predicate.x ==`, false},
		{strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200), false}, // nesting limit
	} {
		_, err := compileCondition(tc.expr)
		if (err == nil) != tc.ok {
			t.Errorf("compile %.40q: err = %v, want ok = %v", tc.expr, err, tc.ok)
		}
	}
}

func BenchmarkConditionEval(b *testing.B) {
	c := mustCondition(b, `predicate.buildDefinition.buildType == "`+githubWorkflowV1+`" && subject.exists(s, s.digest.sha256.size() == 64)`)
	slsa := statement(b, "testdata/statements/slsa-v1.json")
	ctx := context.Background()
	for b.Loop() {
		if ok, err := c.Eval(ctx, slsa); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
