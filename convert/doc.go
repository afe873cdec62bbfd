// Package convert brings foreign pretrained weights into our checkpoint format: torchvision and
// timm ResNets, timm / facebookresearch / torchvision ConvNeXts, and guided-diffusion's ADM UNet.
//
// Reading: Load opens torch.save files (the zip format of PyTorch >= 1.6 and the legacy one,
// unpickled with gopickle; storages are read lazily, views with offsets and strides included)
// and .safetensors files, and finds the state dict, also when nested under "state_dict",
// "model", "ema", ... as training scripts save it. Float32, float16, bfloat16 and float64
// tensors convert to float32.
//
// Mapping: each family maps our variables to checkpoint keys with its model package's one
// key function (resnet.TorchvisionKey, convnext.TimmKey, adm.TorchParams). The variables are
// those of the model itself, built as a graph without running it, so a checkpoint that lacks
// one is an error naming it, unless declared skipped (Options.Skip, e.g. "head/*"); keys no
// variable takes (num_batches_tracked, a skipped classifier) are listed in the Report. Axes
// are permuted from PyTorch's layouts (conv OIHW -> HWIO, linear [out, in] -> [in, out]).
// ResNet and ConvNeXt architectures are recognised from the checkpoint's keys and shapes (and
// checked against Options.Arch when given); ADM needs its configuration name. A common key
// prefix ("module.", mmseg's "backbone.") is detected from the family's keys.
//
// Writing: the result is our checkpoint (train's format), every variable under Options.Scope,
// so that a fine-tuning run loads it with train.LoadScope:
//
//	rep, err := convert.Run(ctx, convert.Options{Input: "resnet50.tv2_in1k",
//		Out: "weights/resnet50.safetensors", Scope: "/model/backbone", Skip: []string{"head/*"}})
//	...
//	_, err = train.LoadScope(store, rep.Out, train.LoadSpec{From: "/model/backbone", Strict: true,
//		Skip: []string{"head/*"}})
//
// Catalogue: Catalogue lists known pretrained checkpoints (torchvision's ResNets and ConvNeXts,
// facebookresearch's and timm's ConvNeXts, guided-diffusion's 256x256 and LSUN models) by
// name, URL and hash when published. Fetch and Run take such a name: the file is looked for in
// the cache folder and, when missing, downloaded (to a temporary file, verified, renamed).
// timm's Hugging Face copies ("timm/...") go through go-huggingface's hub client instead, into
// the Hugging Face cache that Python's huggingface_hub shares (HubCacheDir), at the entry's
// revision, with HF_TOKEN as the bearer token and HF_ENDPOINT as the hub when set; a file that
// timm or huggingface-cli already put there is used as it is. Every download shows a byte
// progress bar on a terminal (Fetcher.Progress), plain lines otherwise. Machines without
// internet get an error that says what to download and where to put it (for a hub entry: the
// repository, file, revision and cache folder). Nothing else in the package touches the
// network.
//
// The tests compare our models, loaded from checkpoints that PyTorch saved from the reference
// code, with PyTorch's outputs (testdata/make_fixtures.py makes them; no Python runs in tests).
package convert
