package backend

import (
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Setenv("GOMLX_BACKEND", "")
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", t.TempDir())
	for _, tc := range []struct {
		flag, env, wantConfig, wantErr string
	}{
		{flag: "go", wantConfig: "go"},
		{env: "go", wantConfig: "go"},
		{flag: "go", env: "xla:cuda", wantConfig: "go"},
		{flag: "xla:/no/such/plugin.so", wantErr: "PJRT plugin /no/such/plugin.so does not exist"},
		{flag: "xla:relative/plugin.so", wantErr: "must be absolute"},
		{flag: "torch", wantErr: `unknown backend "torch"`},
	} {
		t.Setenv("GOMLX_BACKEND", tc.env)
		c, err := Resolve(tc.flag)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Resolve(%q) with GOMLX_BACKEND=%q: error %v, want one containing %q", tc.flag, tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.Config != tc.wantConfig {
			t.Errorf("Resolve(%q) with GOMLX_BACKEND=%q = %q, %v; want %q", tc.flag, tc.env, c.Config, err, tc.wantConfig)
		}
	}
}

func TestDefaultIsGoWithoutPlugins(t *testing.T) {
	t.Setenv("GOMLX_BACKEND", "")
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", t.TempDir())
	t.Setenv("LD_LIBRARY_PATH", "")
	c, err := Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Config != "go" || !strings.Contains(c.Reason, "no PJRT plugin") {
		t.Errorf("default choice = %+v, want the Go backend", c)
	}
	b, _, err := New("")
	if err != nil || !IsGo(b) {
		t.Fatalf("New() = %v, %v; want the Go backend", b, err)
	}
}
