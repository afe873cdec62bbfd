import json
import os, sys; sys.path.insert(0, os.environ.get('PYCOCOTOOLS_DIR', '.')); import numpy as np; from pycocotools import mask as M
rng = np.random.RandomState(3)
images, anns, res = [], [], []
cats = [{"id": c, "name": "c%d" % c} for c in (1, 2, 3, 7)]
aid = 1
for i in range(1, 16):
    H, W = int(rng.randint(60, 330)), int(rng.randint(60, 330))
    images.append({"id": i, "height": H, "width": W})
    for _ in range(rng.randint(0, 7)):
        c = int(rng.choice([1, 2, 3]))
        w, h = float(rng.uniform(2, W*0.8)), float(rng.uniform(2, H*0.8))
        x, y = float(rng.uniform(-5, W - w/2)), float(rng.uniform(-5, H - h/2))
        # a hexagon inside the box
        poly = [x + w/2, y, x + w, y + h/3, x + w, y + 2*h/3, x + w/2, y + h, x, y + 2*h/3, x, y + h/3]
        crowd = int(rng.rand() < 0.1)
        r = M.merge(M.frPyObjects([poly], H, W))
        seg = [poly]
        if crowd:
            seg = {"size": [H, W], "counts": [int(v) for v in np.frombuffer(b'', dtype=np.uint32)]}
            m = M.decode(r)
            # uncompressed RLE for crowds, as COCO stores them
            flat = m.flatten(order='F'); counts = []; prev = 0; run = 0
            for v in flat:
                if v != prev: counts.append(run); run = 0; prev = v
                run += 1
            counts.append(run)
            seg = {"size": [H, W], "counts": counts}
        anns.append({"id": aid, "image_id": i, "category_id": c, "segmentation": seg,
                     "area": float(M.area(r)) if rng.rand() < 0.8 else w*h, "bbox": [x, y, w, h], "iscrowd": crowd})
        aid += 1
        # detections near this object, some duplicates
        for _ in range(rng.randint(0, 3)):
            jx, jy = rng.normal(0, w/25), rng.normal(0, h/25)
            sx, sy = rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)
            bb = [x + jx, y + jy, w*sx, h*sy]
            dc = c if rng.rand() < 0.85 else int(rng.choice([1, 2, 3]))
            rr = M.frPyObjects(np.array([bb], dtype=np.double), H, W)[0]
            res.append({"image_id": i, "category_id": dc, "bbox": [round(v, 3) for v in bb],
                        "score": float(round(rng.uniform(0, 1), 1)),  # coarse scores: many ties
                        "segmentation": {"size": [H, W], "counts": rr['counts'].decode()}})
    for _ in range(rng.randint(0, 3)):  # background false positives
        bb = [float(rng.uniform(0, W-10)), float(rng.uniform(0, H-10)), float(rng.uniform(3, 40)), float(rng.uniform(3, 40))]
        rr = M.frPyObjects(np.array([bb], dtype=np.double), H, W)[0]
        res.append({"image_id": i, "category_id": int(rng.choice([1, 2, 3, 7])), "bbox": [round(v, 3) for v in bb],
                    "score": float(round(rng.uniform(0, 1), 1)), "segmentation": {"size": [H, W], "counts": rr['counts'].decode()}})
json.dump({"images": images, "annotations": anns, "categories": cats}, open('random_gt.json', 'w'))
json.dump(res, open('random_dt.json', 'w'))
print(len(anns), "anns", sum(a['iscrowd'] for a in anns), "crowd", len(res), "dets")
