package teachers_test

import (
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/train/teachers"
)

// TestNewDiffusion: a teacher without a checkpoint, from its configuration's name and the
// pre-training settings.
func TestNewDiffusion(t *testing.T) {
	tc, err := teachers.NewDiffusion("adm_camvid", nil, 50, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tc.TapNames(), ","); got != "dec_s16,dec_s8,dec_s4,dec_s2" {
		t.Errorf("default taps %s", got)
	}
	if tc.Process.NumTimesteps != 1000 || tc.Step != 50 || tc.Checkpoint != "" {
		t.Errorf("teacher %+v", tc)
	}
	targets := tc.Targets(48, 64)
	if targets[0].Height != 3 || targets[0].Width != 4 || targets[0].Channels != 128 {
		t.Errorf("targets %+v", targets)
	}
	if tc, err := teachers.NewDiffusion("adm_camvid", map[string]any{"diffusion_steps": 100}, 50, []string{"dec_s4"}); err != nil ||
		tc.Process.NumTimesteps != 100 || len(tc.Taps) != 1 {
		t.Errorf("with settings: %v, %+v", err, tc)
	}
	for _, c := range []struct {
		name string
		step int
		want string
	}{{"adm_nope", 50, "adm_camvid"}, {"adm_256x256_cond", 50, "class-conditional"}, {"adm_camvid", 1000, "1000-step"}} {
		if _, err := teachers.NewDiffusion(c.name, nil, c.step, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewDiffusion(%s, t=%d): %v, want an error naming %q", c.name, c.step, err, c.want)
		}
	}
}
