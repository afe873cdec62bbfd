package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/backend"
)

func init() {
	register("inspect", "print what was chosen and why: `inspect backend`, `inspect model NAME`", runInspect)
}

func runInspect(args []string) error {
	if len(args) == 0 {
		return usagef("what to inspect? `inspect backend` or `inspect model NAME`")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, `usage: dreamteacher inspect backend [--backend B]   the backend chosen and why
       dreamteacher inspect model NAME [flags]     parameters, GFLOPs and shapes of a model (inspect model -h)
`)
		return nil
	case "backend":
		fs, b := flagSet("inspect backend")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		c, err := backend.Resolve(*b)
		if err != nil {
			if *b != "" {
				return usagef("--backend: %v", err)
			}
			return err
		}
		be, _, err := newBackend(*b)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "backend: %s\nwhy:     %s\ndevice:  %s\nenv:     GOMLX_BACKEND=%q GOMLX_NO_AUTO_INSTALL=%q PJRT_PLUGIN_LIBRARY_PATH=%q\n",
			c.Config, c.Reason, be.Description(), os.Getenv("GOMLX_BACKEND"), os.Getenv("GOMLX_NO_AUTO_INSTALL"), os.Getenv("PJRT_PLUGIN_LIBRARY_PATH"))
		return nil
	case "model":
		return inspectModel(args[1:])
	default:
		return usagef("unknown thing to inspect %q: known are backend, model", strings.Join(args, " "))
	}
}
