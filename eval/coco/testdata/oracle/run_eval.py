import sys, json, io, contextlib
import os, sys; sys.path.insert(0, os.environ.get('PYCOCOTOOLS_DIR', '.')); import numpy as np; from pycocotools import mask as M
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt_path, res_path, iou_type = sys.argv[1:4]
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(gt_path)
    res = json.load(open(res_path))
    if iou_type == 'segm':
        for r in res: r.pop('bbox', None)
    dt = gt.loadRes(res)
    E = COCOeval(gt, dt, iou_type)
    E.evaluate(); E.accumulate()
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    E.summarize()
print(buf.getvalue(), end='')
print("stats:", ", ".join(repr(float(v)) for v in E.stats))
prec = E.eval['precision']
import numpy as np
for k, cat in enumerate(E.params.catIds):
    p = prec[:, :, k, 0, -1]; p = p[p > -1]
    print("cat", cat, repr(float(np.mean(p))) if p.size else "nan")
