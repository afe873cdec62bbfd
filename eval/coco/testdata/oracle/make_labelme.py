import json
import os, sys; sys.path.insert(0, os.environ.get('PYCOCOTOOLS_DIR', '.')); import numpy as np; from pycocotools import mask as M
GT = '/usr/share/doc/labelme-examples/examples/instance_segmentation/data_dataset_coco/annotations.json'
gt = json.load(open(GT))
imgs = {i['id']: i for i in gt['images']}
res = []
shifts = [(0,0),(1.5,-2),(4,3),(-6,2),(10,0),(0,-14),(2.5,2.5),(-3,-1),(20,5),(1,1),(-2,7),(0,30)]
for n, a in enumerate(gt['annotations']):
    dx, dy = shifts[n % len(shifts)]
    im = imgs[a['image_id']]
    polys = [[v + (dx if i % 2 == 0 else dy) for i, v in enumerate(p)] for p in a['segmentation']]
    r = M.merge(M.frPyObjects(polys, im['height'], im['width']))
    x, y, w, h = a['bbox']
    res.append({"image_id": a['image_id'], "category_id": a['category_id'],
                "bbox": [round(x + dx, 2), round(y + dy, 2), round(w * (1 + 0.03 * (n % 4)), 2), round(h, 2)],
                "score": round(0.95 - 0.05 * n, 2) if n != 7 else 0.6,
                "segmentation": {"size": r['size'], "counts": r['counts'].decode()}})
# false positives: a wrong class on image 0 and a box on background of image 2
for img_id, cat, bb, s in [(0, 5, [10, 10, 40, 60], 0.9), (2, 15, [0, 0, 30, 30], 0.62), (1, 6, [300, 10, 80, 80], 0.5)]:
    im = imgs[img_id]
    r = M.frPyObjects(np.array([bb], dtype=np.double), im['height'], im['width'])[0]
    res.append({"image_id": img_id, "category_id": cat, "bbox": bb, "score": s,
                "segmentation": {"size": r['size'], "counts": r['counts'].decode()}})
json.dump(res, open('labelme_results.json', 'w'), indent=0)
