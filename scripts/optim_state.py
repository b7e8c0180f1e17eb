"""Compares the optimizer state of two checkpoints by value.

A checkpoint's optim.pt is LibTorch's optimizer archive, which keys each parameter's state by
the address of the parameter's tensor in the process that wrote it; two runs that reach the
same state therefore write different bytes. This reads both archives, pairs the states by the
parameters' order in each parameter group, and compares every value exactly.

usage: /usr/bin/python3 optim_state.py A/checkpoints/last/optim.pt B/checkpoints/last/optim.pt
Exit status 0 when every state value is equal, 1 naming the first difference.
"""
import sys
import warnings

import torch


def load(path):
    """[[{name: value} per parameter] per group] of the archive at path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = torch.jit.load(path, map_location="cpu")
    states = dict(a.state.named_children())
    groups = []
    for name, pg in a.param_groups.named_children():
        n = getattr(pg, "params/size")
        n = int(n.item()) if torch.is_tensor(n) else int(n)
        group = []
        for i in range(n):
            key = getattr(pg, "params/%d" % i)
            m = states.get(str(key))
            group.append({} if m is None else {k: getattr(m, k) for k in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "sum", "square_avg") if hasattr(m, k)})
        groups.append((name, group))
    return groups


def first_difference(a, b):
    """None when the two loaded archives hold equal state, else a sentence naming where."""
    if len(a) != len(b):
        return "%d parameter groups against %d" % (len(a), len(b))
    for (name, ga), (_, gb) in zip(a, b):
        if len(ga) != len(gb):
            return "%s: %d parameters against %d" % (name, len(ga), len(gb))
        for i, (x, y) in enumerate(zip(ga, gb)):
            if sorted(x) != sorted(y):
                return "%s parameter %d: state %s against %s" % (name, i, sorted(x), sorted(y))
            for k in x:
                u, v = x[k], y[k]
                same = torch.equal(u, v) if torch.is_tensor(u) else u == v
                if not same:
                    return "%s parameter %d: %s differs" % (name, i, k)
    return None


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    d = first_difference(load(argv[1]), load(argv[2]))
    if d is not None:
        print(d)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
