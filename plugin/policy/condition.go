package policy

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
)

// Condition is one CEL expression of an attestation's `conditions`. It is
// compiled when the policy is loaded, so a typo is a policy error with its
// line, not a denial at run time.
//
// The expression sees `predicate` (the statement's predicate, as decoded
// JSON), `predicateType` (string) and `subject` (the statement's subject
// list). It must evaluate to a bool.
type Condition struct {
	Expr string
	Line int
	// Program is the compiled expression, with a cost limit.
	Program cel.Program
}

// ErrCondition wraps failures to evaluate a condition (cost limit exceeded,
// a missing field, a non-bool result); a condition that evaluates to false
// is not an error.
var ErrCondition = errors.New("condition")

// conditionVars are the statement keys a condition sees.
var conditionVars = [...]string{"predicate", "predicateType", "subject"}

// Eval evaluates the condition over a statement (decoded in-toto JSON:
// "predicateType", "subject", "predicate").
//
// The statement must be decoded by encoding/json into map[string]any
// (objects as map[string]any, arrays as []any, numbers as float64). A key
// the statement lacks is an unbound variable: an expression that reads it
// fails with ErrCondition rather than seeing null, so a missing predicate
// never passes a condition by accident.
//
// Evaluation stops at ConditionCostLimit and when ctx is done (checked
// between comprehension iterations); both are errors wrapping
// ErrCondition, the latter also wrapping ctx's cause. A false result is
// (false, nil): the attestation does not satisfy the rule.
func (c *Condition) Eval(ctx context.Context, statement map[string]any) (bool, error) {
	if c == nil || c.Program == nil {
		return false, fmt.Errorf("%w: not compiled; conditions come from Parse or Load", ErrCondition)
	}
	vars := make(map[string]any, len(conditionVars))
	for _, k := range conditionVars {
		if v, ok := statement[k]; ok {
			vars[k] = v
		}
	}
	out, _, err := c.Program.ContextEval(ctx, vars)
	if err != nil {
		return false, fmt.Errorf("%w %s: %w", ErrCondition, c.describe(), err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w %s: evaluated to %s, not a bool", ErrCondition, c.describe(), out.Type().TypeName())
	}
	return b, nil
}

// maxExprInMessage bounds how much of an expression an error quotes.
const maxExprInMessage = 120

// describe names the condition in messages: the expression (shortened)
// and its policy line.
func (c *Condition) describe() string {
	expr := c.Expr
	if utf8.RuneCountInString(expr) > maxExprInMessage {
		expr = string([]rune(expr)[:maxExprInMessage]) + "…"
	}
	if c.Line > 0 {
		return fmt.Sprintf("%q (policy line %d)", expr, c.Line)
	}
	return fmt.Sprintf("%q", expr)
}
