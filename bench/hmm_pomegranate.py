#!/usr/bin/python3
# hmm_pomegranate.py -- plume against pomegranate 0.14.8 (Debian python3-pomegranate, run with the Debian
# /usr/bin/python3) on the same model and data, side by side in one run:
#   /usr/bin/python3 bench/hmm_pomegranate.py build/bench/hmm_fb [K M T [reps]]
# It has hmm_fb write the model and data (--write), times pomegranate's forward (log_probability),
# forward-backward and Viterbi (best of reps), then times plume on the same data (hmm_fb --one), and prints
# the ratios. It also checks that pomegranate's log-likelihood equals plume's.
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pomegranate
from pomegranate import DiscreteDistribution, HiddenMarkovModel, State


def read(path):
    with open(path) as f:
        K, M, T = (int(v) for v in f.readline().split())
        init = [float(v) for v in f.readline().split()]
        A = [[float(v) for v in f.readline().split()] for _ in range(K)]
        B = [[float(v) for v in f.readline().split()] for _ in range(K)]
        y = np.array([int(v) for v in f.readline().split()])
        ll = float(f.readline())
    return K, M, T, init, A, B, y, ll


def best_of(n, fn):
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "build/bench/hmm_fb"
    K, M, T = (int(v) for v in sys.argv[2:5]) if len(sys.argv) > 4 else (16, 32, 200000)
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    fd, path = tempfile.mkstemp(suffix=".txt")
    os.close(fd)
    subprocess.run([exe, "--write", path, str(K), str(M), str(T)], check=True)
    K, M, T, init, A, B, y, ll_plume = read(path)
    os.unlink(path)
    model = HiddenMarkovModel("bench")
    states = [State(DiscreteDistribution({m: B[k][m] for m in range(M)}), name="s%03d" % k) for k in range(K)]
    model.add_states(*states)
    for k in range(K):
        model.add_transition(model.start, states[k], init[k])
        for j in range(K):
            model.add_transition(states[k], states[j], A[k][j])
    model.bake()
    t_fwd, ll = best_of(reps, lambda: model.log_probability(y))
    t_fb, _ = best_of(reps, lambda: model.forward_backward(y))
    t_vit, (logp, _) = best_of(reps, lambda: model.viterbi(y))
    print("pomegranate %s  K=%d M=%d T=%d  forward %.4f s  forward-backward %.4f s  viterbi %.4f s"
          % (pomegranate.__version__, K, M, T, t_fwd, t_fb, t_vit))
    print("  check: pomegranate loglik %.12g, plume %.12g (diff %.1e)" % (ll, ll_plume, abs(ll - ll_plume)))
    line = subprocess.run([exe, "--one", str(K), str(M), str(T)], check=True, capture_output=True, text=True).stdout
    print(line.rstrip())
    fb = float(re.search(r"fb: plume +([0-9.]+) s", line).group(1))
    vit = float(re.search(r"viterbi: plume +([0-9.]+) s", line).group(1))
    fwd = float(re.search(r"loglik \(forward only\) +([0-9.]+) s", line).group(1))
    print("  plume is faster than pomegranate by: forward %.0fx, forward-backward %.0fx, viterbi %.0fx"
          % (t_fwd / fwd, t_fb / fb, t_vit / vit))


if __name__ == "__main__":
    main()
