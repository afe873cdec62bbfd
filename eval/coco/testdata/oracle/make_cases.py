import json, os
cases = {}
def img(i, h=200, w=200): return {"id": i, "height": h, "width": w, "file_name": "%d.jpg" % i}
def box(i, img_id, bb, cat=1, crowd=0, area=None):
    return {"id": i, "image_id": img_id, "category_id": cat, "bbox": bb, "area": bb[2]*bb[3] if area is None else area, "iscrowd": crowd}
def det(img_id, bb, score, cat=1): return {"image_id": img_id, "category_id": cat, "bbox": bb, "score": score}
cats = [{"id": 1, "name": "thing"}]

# perfect detections: one small, one medium object
cases["perfect"] = ({"images": [img(1), img(2)], "categories": cats,
    "annotations": [box(1, 1, [0,0,10,10]), box(2, 2, [10,10,50,50])]},
    [det(1, [0,0,10,10], .9), det(2, [10,10,50,50], .8)])
# a false positive scored above the true positive
cases["fp_first"] = ({"images": [img(1)], "categories": cats,
    "annotations": [box(1, 1, [0,0,10,10])]},
    [det(1, [50,50,10,10], .9), det(1, [0,0,10,10], .8)])
# a crowd region absorbing extra detections
cases["crowd"] = ({"images": [img(1)], "categories": cats,
    "annotations": [box(1, 1, [0,0,10,10]), box(2, 1, [20,0,30,30], crowd=1)]},
    [det(1, [0,0,10,10], .9), det(1, [22,2,5,5], .8), det(1, [30,10,5,5], .7), det(1, [40,20,5,5], .6)])
# areas exactly on the range boundaries: 32^2 is small and medium, 96^2 medium and large
cases["area_bounds"] = ({"images": [img(1)], "categories": cats,
    "annotations": [box(1, 1, [0,0,32,32]), box(2, 1, [100,100,96,96])]},
    [det(1, [0,0,32,32], .9), det(1, [100,100,96,96], .8)])
# equal scores: file order decides, the false positive comes first
cases["ties"] = ({"images": [img(1)], "categories": cats,
    "annotations": [box(1, 1, [0,0,10,10]), box(2, 1, [100,100,10,10])]},
    [det(1, [50,50,10,10], .5), det(1, [0,0,10,10], .5), det(1, [100,100,10,10], .5)])
# three categories: 2 has only a detection, 3 has nothing
cases["empty_cat"] = ({"images": [img(1)], "categories": cats + [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    "annotations": [box(1, 1, [0,0,10,10])]},
    [det(1, [0,0,10,10], .9), det(1, [5,5,10,10], .8, cat=2)])
# masks on a 4x4 image: a 2x2 block (uncompressed RLE) and column 3 (polygon)
cases["segm_tiny"] = ({"images": [img(1, 4, 4)], "categories": cats,
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "area": 4, "iscrowd": 0, "bbox": [0,0,2,2],
         "segmentation": {"size": [4,4], "counts": [0,2,2,2,10]}},
        {"id": 2, "image_id": 1, "category_id": 1, "area": 4, "iscrowd": 0, "bbox": [3,0,1,4],
         "segmentation": [[3,0, 3,4, 4,4, 4,0]]}]},
    [{"image_id": 1, "category_id": 1, "score": .9, "segmentation": {"size": [4,4], "counts": "02208"}},
     {"image_id": 1, "category_id": 1, "score": .8, "segmentation": {"size": [4,4], "counts": "<31"}}])
for name, (gt, dt) in cases.items():
    json.dump(gt, open(name + "_gt.json", "w"))
    json.dump(dt, open(name + "_dt.json", "w"))
