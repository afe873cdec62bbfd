package main

import (
	"fmt"
	"os"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/train/ssl"
)

func init() {
	register("pretrain-ssl", "pre-train a backbone with a self-supervised baseline: --method mocov2 (MoCo v2) or byol (BYOL), for finetune --set init=", runPretrainSSL)
}

// runPretrainSSL runs `dreamteacher pretrain-ssl --method mocov2|byol`: --method X is --set
// ssl_method=X (the setting, so that checkpoints record it and a resumed run keeps it).
func runPretrainSSL(args []string) error {
	method, args, err := extractFlag(args, "method", "")
	if err != nil {
		return err
	}
	if method != "" {
		args = append(args, "--set", "ssl_method="+method)
	}
	e := newExperiment("pretrain-ssl", "out/ssl", ssl.Defaults())
	e.fs.String("method", "mocov2", "the self-supervised method: mocov2 or byol (= --set ssl_method=...)")
	b, store, err := e.prepare(args)
	if err != nil {
		return err
	}
	res, err := ssl.Run(b, store, *e.out, os.Stderr)
	if err != nil {
		return e.finish(err)
	}
	reportSkipped(res.Skipped)
	method = configs.Get[string](store, "ssl_method")
	fmt.Fprintf(stdout, "%s: %d steps in %s, loss %.4f -> %.4f\n", method, res.Steps, res.TrainTime.Round(time.Second), res.FirstLoss, res.LastLoss)
	result := map[string]any{"task": "pretrain-ssl", "method": method, "steps": res.Steps,
		"first_loss": res.FirstLoss, "loss": res.LastLoss, "lr": res.LR, "train_seconds": res.TrainTime.Seconds(),
		"checkpoint": res.Checkpoint, "backbone_scope": ssl.BackboneScope, "skipped": res.Skipped, "settings": settingsMap(store, e.defaults)}
	if method == "mocov2" {
		fmt.Fprintf(stdout, "instance-discrimination accuracy of the last step: %.3f\n", res.LastAcc)
		result["acc"] = res.LastAcc
	}
	fmt.Fprintf(stdout, "checkpoint: %s (backbone under %s: finetune --set init=%s)\n", res.Checkpoint, ssl.BackboneScope, res.Checkpoint)
	return writeResult(*e.out, result)
}
