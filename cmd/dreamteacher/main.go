// Command dreamteacher is the one binary of DreamTeacher-Go: generative teachers, distillation
// into backbones, fine-tuning, evaluation, benchmarks and the demo. Every flag lives in this
// package; the work is done by the library packages.
//
//	dreamteacher <command> [flags]
//	dreamteacher <command> -h
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/backend"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/all"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/gomlx/compute"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

// stdout receives the commands' results (run sets it; tests capture it).
var stdout io.Writer = os.Stdout

func register(name, summary string, run func(args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

// usageError is a mistake in the command line: reported in one line, exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, out, stderr io.Writer) int {
	stdout = out
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(out)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "dreamteacher: unknown command %q; commands: %s\n", args[0], strings.Join(commandNames(), ", "))
		return 2
	}
	err := cmd.run(args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case isUsage(err):
		fmt.Fprintf(stderr, "dreamteacher %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "dreamteacher %s: %v\n", args[0], err)
		return 1
	}
}

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: dreamteacher <command> [flags]   (dreamteacher <command> -h for its flags)")
	fmt.Fprintln(w)
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-20s %s\n", n, commands[n].summary)
	}
}

// flagSet makes a FlagSet whose errors become one-line usage errors. Every command has
// --backend.
func flagSet(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b := fs.String("backend", "", `compute backend: "go", "xla:cuda", "xla:/abs/path/plugin.so" (default: $GOMLX_BACKEND, else an installed PJRT plugin, else go)`)
	return fs, b
}

// parse parses args; -h prints the flags to stdout.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "usage: dreamteacher %s [flags]\n", fs.Name())
			fs.PrintDefaults()
			return flag.ErrHelp
		}
		return usagef("%v (see dreamteacher %s -h)", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see dreamteacher %s -h)", fs.Arg(0), fs.Name())
	}
	return nil
}

// newBackend resolves --backend; a bad value is a usage error naming the flag.
func newBackend(flagValue string) (compute.Backend, backend.Choice, error) {
	b, c, err := backend.New(flagValue)
	if err != nil {
		if flagValue != "" {
			return nil, c, usagef("--backend: %v", err)
		}
		return nil, c, err
	}
	return b, c, nil
}

// requireDir checks that a path flag names an existing folder.
func requireDir(flagName, path string) error {
	if path == "" {
		return usagef("--%s is required", flagName)
	}
	st, err := os.Stat(path)
	if err != nil {
		return usagef("--%s: %s does not exist", flagName, path)
	}
	if !st.IsDir() {
		return usagef("--%s: %s is not a folder", flagName, path)
	}
	return nil
}

// requireFile checks that a path flag names an existing file.
func requireFile(flagName, path string) error {
	if path == "" {
		return usagef("--%s is required", flagName)
	}
	st, err := os.Stat(path)
	if err != nil {
		return usagef("--%s: %s does not exist", flagName, path)
	}
	if st.IsDir() {
		return usagef("--%s: %s is a folder, want a file", flagName, path)
	}
	return nil
}
