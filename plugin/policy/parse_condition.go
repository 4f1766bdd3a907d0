package policy

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

// Bounds on conditions. The policy is trusted, but a condition runs on every
// decision that needs its attestation, inside the runtime's deadline, over a
// predicate the image's signer wrote: evaluation must stay cheap whatever the
// predicate holds.
const (
	// ConditionCostLimit is the CEL runtime cost (roughly, operations) one
	// evaluation may spend; past it, evaluation stops with an error wrapping
	// ErrCondition. A check over a few hundred list entries costs a few
	// thousand.
	ConditionCostLimit = 100000
	// conditionInterruptEvery is how many comprehension iterations run
	// between checks of the context, so a deadline stops a long loop.
	conditionInterruptEvery = 100
	// maxConditionLen bounds one expression (in characters); split longer
	// ones into several conditions, which must all hold anyway.
	maxConditionLen = 4096
	// maxConditionNesting bounds the expression's parse depth.
	maxConditionNesting = 64
)

// conditionEnv is the CEL environment every condition compiles in, built
// once: the statement's three fields as variables, the standard library
// only (its functions all have runtime costs, so the cost limit holds).
// JSON numbers are doubles, so numeric comparisons across int and double
// are enabled: `predicate.count > 1` works on a decoded predicate.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("predicate", cel.DynType),
		cel.Variable("predicateType", cel.StringType),
		cel.Variable("subject", cel.ListType(cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxConditionLen),
		cel.ParserRecursionLimit(maxConditionNesting),
	)
})

// conditions parses an attestation's `conditions`: a non-empty list of CEL
// expressions, each compiled now, so a typo is a policy error with its line.
func (p *parser) conditions(n *yaml.Node, path string) ([]*Condition, error) {
	items, err := p.list(n, path)
	if err != nil {
		return nil, p.errf(n, path, "must be a list of CEL expressions, not %s", describe(n))
	}
	if len(items) == 0 {
		return nil, p.errf(n, path, "an empty list sets no condition; remove the key, or list CEL expressions such as 'predicate.buildDefinition.buildType == \"https://example.com/build/v1\"'")
	}
	out := make([]*Condition, 0, len(items))
	for i, item := range items {
		ipath := index(path, i)
		expr, err := p.str(item, ipath)
		if err != nil {
			return nil, err
		}
		c, err := compileCondition(expr)
		if err != nil {
			return nil, p.errf(item, ipath, "%v", err)
		}
		c.Line = item.Line
		out = append(out, c)
	}
	return out, nil
}

// compileCondition type-checks expr in conditionEnv and builds its program
// with the cost limit. The result must be a bool (or dyn, checked when
// evaluated).
func compileCondition(expr string) (*Condition, error) {
	if n := utf8.RuneCountInString(expr); n > maxConditionLen {
		return nil, fmt.Errorf("the expression has %d characters, more than %d; split it into several conditions (all must hold)", n, maxConditionLen)
	}
	env, err := conditionEnv()
	if err != nil {
		return nil, fmt.Errorf("cannot set up CEL: %v", err)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("not a valid CEL expression: %s; the expression sees predicate, predicateType and subject", celIssues(iss))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("the expression evaluates to %s, not bool; a condition must be true or false, e.g. predicate.x == \"y\"", t)
	}
	prg, err := env.Program(ast,
		cel.CostLimit(ConditionCostLimit),
		cel.InterruptCheckFrequency(conditionInterruptEvery),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, fmt.Errorf("not a usable CEL expression: %v", err)
	}
	return &Condition{Expr: expr, Program: prg}, nil
}

// celIssues renders CEL's compile errors on one line each, positioned within
// the expression ("1:5", 1-based), without CEL's "<input>" file name and
// caret art, and at most a few of them.
func celIssues(iss *cel.Issues) string {
	errs := iss.Errors()
	const shown = 3 // a garbled expression yields an error per token
	msgs := make([]string, 0, shown+1)
	for i, e := range errs {
		if i == shown {
			msgs = append(msgs, fmt.Sprintf("and %d more", len(errs)-shown))
			break
		}
		msg := e.Message
		if loc := e.Location; loc != nil && loc.Line() > 0 {
			msg = fmt.Sprintf("%d:%d: %s", loc.Line(), loc.Column()+1, msg)
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return iss.Err().Error()
	}
	return strings.Join(msgs, "; ")
}
