import os, sys; sys.path.insert(0, os.environ.get('PYCOCOTOOLS_DIR', '.')); import numpy as np; from pycocotools import mask as M
rng = np.random.RandomState(7)
H, W = 17, 23
polys = []
# hand-picked edge cases
polys.append([1,1,1,3,3,3,3,1])                      # axis-aligned square
polys.append([-3.2,-1.0, 25.7,2.2, 10.1,20.4])        # clipped triangle
polys.append([2,2, 2,2, 8,3, 8,3, 5,9])               # repeated vertices
polys.append([4.5,4.5, 4.5,4.5, 4.5,4.5])             # degenerate point
polys.append([0,0, 23,0, 23,17, 0,17])                # full image
for i in range(7):
    n = rng.randint(3, 9)
    cx, cy = rng.uniform(0, W), rng.uniform(0, H)
    ang = np.sort(rng.uniform(0, 2*np.pi, n))
    rad = rng.uniform(1, 9, n)
    p = []
    for a, r in zip(ang, rad):
        p += [float(cx + r*np.cos(a)), float(cy + r*np.sin(a))]
    polys.append(p)
print("// polygons")
rles = []
for p in polys:
    r = M.frPyObjects([p], H, W)[0]
    rles.append(r)
    bb = M.toBbox(r)
    print("{poly: []float64{%s}, counts: %r, area: %d, bbox: [4]float64{%s}}," % (
        ", ".join(repr(float(v)) for v in p), r['counts'].decode(), int(M.area(r)), ", ".join(repr(float(v)) for v in bb)))
print("// boxes")
boxes = [[0,0,5,5],[2.3,1.7,10.2,4.4],[-2,-2,30,30],[20.5,15.5,4,4],[7,7,0,3]]
for b in boxes:
    r = M.frPyObjects(np.array([b],dtype=np.double), H, W)[0]
    print("{box: [4]float64{%s}, counts: %r}," % (", ".join(repr(float(v)) for v in b), r['counts'].decode()))
print("// merges of polygons 5..11")
print("union", repr(M.merge(rles[5:], 0)['counts'].decode()))
print("inter", repr(M.merge(rles[5:7], 1)['counts'].decode()))
print("// iou dt=polys 5..8, gt=polys 8..11, crowd=[0,1,0]")
iou = M.iou(rles[5:8], rles[8:11], [0,1,0])
for row in iou: print("{%s}," % ", ".join(repr(float(v)) for v in row))
print("// box iou, same boxes as dt, boxes as gt crowd [0,0,1,0,1]")
iou = M.iou(np.array(boxes[:3],dtype=np.double), np.array(boxes,dtype=np.double), [0,0,1,0,1])
for row in iou: print("{%s}," % ", ".join(repr(float(v)) for v in row))
