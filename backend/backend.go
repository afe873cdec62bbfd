// Package backend chooses the compute backend that every command and test runs on, in one place.
//
// The choice, in order:
//  1. the --backend flag of a command, when given;
//  2. the GOMLX_BACKEND environment variable, when set (e.g. "go", "xla:cuda",
//     "xla:/abs/path/xla_cuda_plugin.so");
//  3. a PJRT plugin already installed on the machine (found by the XLA backend's search:
//     PJRT_PLUGIN_LIBRARY_PATH, /usr/local/lib/go-xla, ~/.local/lib/go-xla, the system library
//     paths), preferring CUDA;
//  4. the pure-Go backend, which is always available.
//
// Nothing is ever downloaded: the XLA backend's auto-install is switched off unless the user
// asks for it with GOMLX_NO_AUTO_INSTALL=0.
package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
	"github.com/gomlx/go-xla/compute/xla"
)

// Choice is the backend configuration selected and the reason it was selected.
type Choice struct {
	// Config is the GoMLX backend configuration string, e.g. "go" or "xla:cuda".
	Config string
	// Reason says why this configuration was chosen, for `dreamteacher inspect backend`.
	Reason string
}

func init() {
	// No downloads at run time: only an explicit GOMLX_NO_AUTO_INSTALL=0 re-enables the XLA
	// backend's plugin auto-install.
	if os.Getenv("GOMLX_NO_AUTO_INSTALL") != "0" {
		xla.EnableAutoInstall(false)
	}
}

// Resolve decides which backend configuration to use. flagValue is the --backend flag ("" if unset).
func Resolve(flagValue string) (Choice, error) {
	var c Choice
	switch {
	case flagValue != "":
		c = Choice{Config: flagValue, Reason: "set by the --backend flag"}
	case os.Getenv(compute.ConfigEnvVar) != "":
		c = Choice{Config: os.Getenv(compute.ConfigEnvVar), Reason: "set by the GOMLX_BACKEND environment variable"}
	default:
		if plugins := xla.GetAvailablePlugins(); len(plugins) > 0 {
			c = Choice{Config: "xla:" + plugins[0],
				Reason: fmt.Sprintf("no backend was requested and PJRT plugins %q are installed", plugins)}
		} else {
			c = Choice{Config: gobackend.BackendName,
				Reason: "no backend was requested and no PJRT plugin is installed (set GOMLX_BACKEND=xla:/abs/path/plugin.so to use one)"}
		}
	}
	return c, validate(c.Config)
}

// validate catches the configuration mistakes that would otherwise surface as a stack trace
// deep inside a backend.
func validate(config string) error {
	name, rest, _ := strings.Cut(config, ":")
	switch name {
	case gobackend.BackendName:
		return nil
	case "xla", "stablehlo", "shlo", "hlo":
		plugin, _, _ := strings.Cut(rest, ",")
		if strings.ContainsRune(plugin, filepath.Separator) {
			if !filepath.IsAbs(plugin) {
				return fmt.Errorf("backend %q: the PJRT plugin path %q must be absolute", config, plugin)
			}
			if _, err := os.Stat(plugin); err != nil {
				return fmt.Errorf("backend %q: PJRT plugin %s does not exist", config, plugin)
			}
		}
		return nil
	default:
		return fmt.Errorf("backend %q: unknown backend %q (known: go, xla:<plugin name or /abs/path.so>)", config, name)
	}
}

var (
	cacheMu sync.Mutex
	cache   = map[string]compute.Backend{}
)

// New resolves the backend (see Resolve) and creates it. Backends are cached by configuration,
// so that all commands and tests of one process share them.
func New(flagValue string) (compute.Backend, Choice, error) {
	c, err := Resolve(flagValue)
	if err != nil {
		return nil, c, err
	}
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if b, ok := cache[c.Config]; ok {
		return b, c, nil
	}
	b, err := compute.NewWithConfig(c.Config)
	if err != nil {
		return nil, c, fmt.Errorf("backend %q (%s): %v", c.Config, c.Reason, firstLine(err.Error()))
	}
	cache[c.Config] = b
	return b, c, nil
}

// Go returns the pure-Go backend: the one tests and CPU-only machines use.
func Go() compute.Backend {
	b, _, err := New(gobackend.BackendName)
	if err != nil {
		panic(err)
	}
	return b
}

// IsGo reports whether b is the pure-Go backend, whose native convolution is too slow to use
// (models/nn lowers convolutions to matrix multiplications there).
func IsGo(b compute.Backend) bool {
	return b != nil && b.String() == gobackend.BackendName
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
