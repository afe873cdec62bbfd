// Package scripts holds the reproduction and benchmark drivers; its tests check the logic of
// gpu_check.sh where no GPU is: on a fake site-packages layout and a fake binary.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBinary stands for bin/dreamteacher: it lists the workloads for `bench -h`, logs every
// other call with the environment the GPU libraries need, and prints a verify line whose
// numbers the test chooses (FAKE_REL, FAKE_GRAD, FAKE_N); bench exits with FAKE_RC.
const fakeBinary = `#!/bin/sh
if [ "$1 $2" = "bench -h" ]; then
	echo '    	workload: adm, distill, resnet18-cifar, or loader (JPEG decoding + augmentation) (default "resnet18-cifar")'
	exit 0
fi
echo "CALL $* | LD_LIBRARY_PATH=$LD_LIBRARY_PATH | XLA_FLAGS=$XLA_FLAGS | NVIDIA_TF32_OVERRIDE=${NVIDIA_TF32_OVERRIDE:-unset}" >>"$FAKE_LOG"
case " $* " in
*" --verify "*) echo "verify w at 32 px, batch 64: loss xla 2.302 vs go 2.302 (rel. diff ${FAKE_REL:-1.20e-07}); gradients of ${FAKE_N:-62} variables: max relative error ${FAKE_GRAD:-4.00e-06} (/model/stem/conv/weights)" ;;
esac
[ "$1" = bench ] && exit ${FAKE_RC:-0}
exit 0
`

// layout makes a site-packages as pip installs jax[cuda13] there, and the fake binary.
func layout(t *testing.T) (sp, bin, log string) {
	t.Helper()
	dir := t.TempDir()
	sp = filepath.Join(dir, "site-packages")
	for _, d := range []string{"jax_plugins/xla_cuda13", "nvidia/cu13/lib", "nvidia/cu13/bin", "nvidia/cu13/nvvm/libdevice",
		"nvidia/cudnn/lib", "nvidia/nccl/lib", "nvidia/cuda_nvcc/bin"} {
		if err := os.MkdirAll(filepath.Join(sp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"jax_plugins/xla_cuda13/xla_cuda_plugin.so", "nvidia/cu13/bin/ptxas", "nvidia/cuda_nvcc/bin/ptxas"} {
		if err := os.WriteFile(filepath.Join(sp, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin = filepath.Join(dir, "dreamteacher")
	if err := os.WriteFile(bin, []byte(fakeBinary), 0o755); err != nil {
		t.Fatal(err)
	}
	return sp, bin, filepath.Join(dir, "calls.log")
}

func runCheck(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"gpu_check.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:/bin", "GPU_CHECK_LOG="+filepath.Join(t.TempDir(), "gpu_check.log"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func requireTools(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

func TestGPUCheckShellcheck(t *testing.T) {
	requireTools(t, "shellcheck")
	if out, err := exec.Command("shellcheck", "gpu_check.sh").CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// TestGPUCheckEnvironment: the plugin and the pip NVIDIA libraries are found through python's
// site-packages, and the binary runs with them on LD_LIBRARY_PATH, XLA pointed at the CUDA 13
// toolkit wheel, and TF32 off for the comparison.
func TestGPUCheckEnvironment(t *testing.T) {
	requireTools(t, "bash", "python3")
	sp, bin, log := layout(t)
	plugin := filepath.Join(sp, "jax_plugins/xla_cuda13/xla_cuda_plugin.so")
	libs := strings.Join([]string{filepath.Join(sp, "nvidia/cu13/lib"), filepath.Join(sp, "nvidia/cudnn/lib"), filepath.Join(sp, "nvidia/nccl/lib")}, ":")
	xlaFlags := "--xla_gpu_cuda_data_dir=" + filepath.Join(sp, "nvidia/cu13")

	out, code := runCheck(t, []string{"PYTHONPATH=" + sp, "DREAMTEACHER_BIN=" + bin, "LD_LIBRARY_PATH="}, "--print-env")
	for _, want := range []string{"plugin=" + plugin, "LD_LIBRARY_PATH=" + libs + "\n", "XLA_FLAGS=" + xlaFlags + "\n",
		"env NVIDIA_TF32_OVERRIDE=0 " + bin + " bench --backend xla:" + plugin + ",tf32=false --workload resnet18-cifar --sizes 32,64,224 --batch 64 --verify"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--print-env (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	if calls, _ := os.ReadFile(log); len(calls) != 0 {
		t.Errorf("--print-env ran the binary:\n%s", calls)
	}

	out, code = runCheck(t, []string{"PYTHONPATH=" + sp, "DREAMTEACHER_BIN=" + bin, "FAKE_LOG=" + log, "LD_LIBRARY_PATH=/usr/local/lib"})
	if code != 0 || !strings.Contains(out, "gpu_check: passed") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	raw, _ := os.ReadFile(log)
	calls := strings.Split(strings.TrimSpace(string(raw)), "\n")
	// inspect backend, then one process per workload, the cheapest first.
	wantOrder := []string{"inspect backend", "--workload resnet18-cifar", "--workload adm", "--workload distill"}
	if len(calls) != len(wantOrder) {
		t.Fatalf("%d calls, want %d:\n%s", len(calls), len(wantOrder), raw)
	}
	for i, c := range calls {
		if !strings.Contains(c, wantOrder[i]) || !strings.Contains(c, "LD_LIBRARY_PATH="+libs+":/usr/local/lib |") ||
			!strings.Contains(c, "XLA_FLAGS="+xlaFlags+" |") {
			t.Errorf("call %d: %s", i, c)
		}
		if i > 0 && (!strings.Contains(c, "NVIDIA_TF32_OVERRIDE=0") || !strings.Contains(c, "tf32=false") || !strings.Contains(c, "--verify")) {
			t.Errorf("call %d does not verify with TF32 off: %s", i, c)
		}
	}

	// A CUDA 12 plugin takes the CUDA 12 toolkit wheel; SITE_PACKAGES skips python.
	os.Rename(filepath.Join(sp, "jax_plugins/xla_cuda13"), filepath.Join(sp, "jax_plugins/xla_cuda12"))
	out, code = runCheck(t, []string{"SITE_PACKAGES=" + sp, "PYTHON=false", "DREAMTEACHER_BIN=" + bin}, "--print-env")
	if want := "XLA_FLAGS=--xla_gpu_cuda_data_dir=" + filepath.Join(sp, "nvidia/cuda_nvcc") + "\n"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("CUDA 12: exit %d, want %q:\n%s", code, want, out)
	}
}

// TestGPUCheckTolerance: the check fails when the GPU and the Go backend differ by more than
// the tolerances, when a number is not one, and when bench fails or prints no comparison.
func TestGPUCheckTolerance(t *testing.T) {
	requireTools(t, "bash", "python3")
	sp, bin, log := layout(t)
	base := []string{"PYTHONPATH=" + sp, "DREAMTEACHER_BIN=" + bin, "FAKE_LOG=" + log, "WORKLOADS=adm"}
	for _, c := range []struct {
		name string
		env  []string
		want string // in the output; "" for a pass
	}{
		{"within", nil, ""},
		{"loss", []string{"FAKE_REL=3.00e-04"}, "adm: loss relative difference 3.00e-04 above 1e-4"},
		{"gradient", []string{"FAKE_GRAD=2.10e-03"}, "adm: gradient relative error 2.10e-03 above 1e-3"},
		{"stated tolerance", []string{"FAKE_GRAD=2.10e-03", "GPU_CHECK_TOL_GRAD=5e-3"}, ""},
		{"NaN", []string{"FAKE_GRAD=NaN"}, "adm: gradient relative error NaN above 1e-3"},
		{"no gradients", []string{"FAKE_N=0"}, "adm: no gradient compared"},
		{"bench failed", []string{"FAKE_RC=3"}, "adm: bench failed (exit status 3)"},
	} {
		out, code := runCheck(t, append(append([]string{}, base...), c.env...))
		switch {
		case c.want == "" && (code != 0 || !strings.Contains(out, "gpu_check: passed")):
			t.Errorf("%s: exit %d:\n%s", c.name, code, out)
		case c.want != "" && (code != 1 || !strings.Contains(out, "gpu_check: FAILED: "+c.want)):
			t.Errorf("%s: exit %d, want a failure %q:\n%s", c.name, code, c.want, out)
		}
	}
}

// TestGPUCheckMissing: no plugin, or no binary, is a one-line error saying what to do.
func TestGPUCheckMissing(t *testing.T) {
	requireTools(t, "bash", "python3")
	empty := t.TempDir()
	out, code := runCheck(t, []string{"PYTHONPATH=" + empty, "PYTHON=python3"})
	if code != 1 || !strings.Contains(out, "has jax's CUDA plugin") || !strings.Contains(out, "PJRT_PLUGIN=") {
		t.Errorf("no plugin: exit %d:\n%s", code, out)
	}
	sp, _, _ := layout(t)
	out, code = runCheck(t, []string{"PYTHONPATH=" + sp, "DREAMTEACHER_BIN=" + filepath.Join(empty, "dreamteacher")})
	if code != 1 || !strings.Contains(out, "is missing: build it on a machine with Go (GOEXPERIMENT=simd make build) and copy it here") {
		t.Errorf("no binary: exit %d:\n%s", code, out)
	}
}
