"""Exact AUROC and average precision in numpy, independent of spectraclip's Go code.

usage: ranking.py DIR   (DIR/s.bin: little-endian float64 scores, DIR/l.bin: uint8 labels)
prints {"auroc": ..., "ap": ...}: AUROC as the Mann-Whitney U with average ranks for ties,
AP as sklearn.metrics.average_precision_score (-sum(diff(recall) * precision) over the
distinct thresholds of precision_recall_curve).
"""
import sys, json, numpy as np
d = sys.argv[1]
s = np.fromfile(d + "/s.bin", dtype="<f8")
y = np.fromfile(d + "/l.bin", dtype=np.uint8).astype(bool)
# Mann-Whitney with average ranks for ties
order = np.argsort(s, kind="mergesort")
ss = s[order]
ranks = np.empty(len(s))
i = 0
while i < len(ss):
    j = i
    while j + 1 < len(ss) and ss[j + 1] == ss[i]:
        j += 1
    ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
    i = j + 1
P, N = y.sum(), (~y).sum()
auc = (ranks[y].sum() - P * (P + 1) / 2) / (P * N)
# sklearn's precision_recall_curve + average_precision_score
desc = np.argsort(-s, kind="mergesort")
s2, y2 = s[desc], y[desc].astype(float)
idx = np.r_[np.where(np.diff(s2))[0], len(s2) - 1]
tps = np.cumsum(y2)[idx]
fps = 1 + idx - tps
prec = tps / (tps + fps)
rec = tps / tps[-1]
prec = np.r_[prec[::-1], 1]
rec = np.r_[rec[::-1], 0]
ap = -np.sum(np.diff(rec) * np.array(prec)[:-1])
print(json.dumps({"auroc": float(auc), "ap": float(ap)}))
