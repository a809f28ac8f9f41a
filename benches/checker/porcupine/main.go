// Command porcupine-register checks a register history, in the JSON lines
// of `concord-sim check --model register`, with porcupine, so that the
// checker bench (`benches/checker/checker_goals.rs`) can time both on the
// same histories. It prints one line: `porcupine: RESULT SECONDS`, RESULT
// being Ok, Illegal or Unknown (the timeout was reached).
//
// Porcupine's source is not part of this repository: put a checkout of
// github.com/anishathalye/porcupine in ./porcupine (see go.mod), then
// `go build -o porcupine-register .` and point PORCUPINE_BIN at it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

type record struct {
	Op     string      `json:"op"`
	Value  interface{} `json:"value"`
	Call   int64       `json:"call"`
	Return *int64      `json:"return"`
	Ok     *bool       `json:"ok"`
	Client int         `json:"client"`
}

type input struct {
	write bool
	value string
}

func text(v interface{}) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatInt(int64(x), 10)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: porcupine-register HISTORY.jsonl TIMEOUT_SECONDS")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	timeout, err := strconv.ParseFloat(os.Args[2], 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var ops []porcupine.Operation
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		if len(scanner.Bytes()) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(scanner.Bytes(), &r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		failed := r.Ok != nil && !*r.Ok
		unknown := r.Return == nil && !failed
		switch {
		case failed:
			// Never took effect.
		case r.Op == "write" && unknown:
			// May take effect at any time after its call: it never returns.
			ops = append(ops, porcupine.Operation{ClientId: r.Client, Input: input{true, text(r.Value)}, Call: r.Call, Output: nil, Return: math.MaxInt64})
		case r.Op == "write":
			ops = append(ops, porcupine.Operation{ClientId: r.Client, Input: input{true, text(r.Value)}, Call: r.Call, Output: nil, Return: *r.Return})
		case r.Op == "read" && !unknown:
			ops = append(ops, porcupine.Operation{ClientId: r.Client, Input: input{false, ""}, Call: r.Call, Output: text(r.Value), Return: *r.Return})
		}
	}
	model := porcupine.Model{
		Init: func() interface{} { return "" },
		Step: func(state, in, out interface{}) (bool, interface{}) {
			i := in.(input)
			if i.write {
				return true, i.value
			}
			return out.(string) == state.(string), state
		},
	}
	start := time.Now()
	result := porcupine.CheckOperationsTimeout(model, ops, time.Duration(timeout*float64(time.Second)))
	fmt.Printf("porcupine: %v %.6f\n", result, time.Since(start).Seconds())
}
