#!/usr/bin/env python3
"""Independent reference value for the full-covariance 3x3 Frechet distance test.

Computes  ||mu1-mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))  the classic
(pytorch-fid / fadtk) way with scipy.linalg.sqrtm on the *non-symmetric*
product, and cross-checks it with the symmetric form
tr(sqrtm(S1^1/2 S2 S1^1/2)) via numpy.linalg.eigh. The Rust test in
src/fad.rs quotes the printed value with 1e-8 relative tolerance.

Usage:  python3 -m venv /tmp/fadvenv && /tmp/fadvenv/bin/pip install numpy scipy
        /tmp/fadvenv/bin/python tools/fad_reference.py
"""
import numpy as np
from scipy import linalg

mu1 = np.array([0.5, -1.0, 2.0])
mu2 = np.array([1.5, 0.25, 1.0])
S1 = np.array([[4.0, 1.2, -0.6],
               [1.2, 3.0, 0.8],
               [-0.6, 0.8, 2.0]])
S2 = np.array([[1.0, -0.3, 0.2],
               [-0.3, 2.5, 0.9],
               [0.2, 0.9, 1.5]])

diff = mu1 - mu2
covmean = np.real(linalg.sqrtm(S1 @ S2))
fd_scipy = diff @ diff + np.trace(S1) + np.trace(S2) - 2.0 * np.trace(covmean)

w, V = np.linalg.eigh(S1)
s1h = V @ np.diag(np.sqrt(w)) @ V.T
m = s1h @ S2 @ s1h
lam = np.linalg.eigvalsh((m + m.T) / 2)
fd_eigh = diff @ diff + np.trace(S1) + np.trace(S2) - 2.0 * np.sqrt(np.clip(lam, 0, None)).sum()

print(f"fd_scipy_sqrtm = {float(fd_scipy)!r}")
print(f"fd_eigh        = {float(fd_eigh)!r}")
print(f"rel_diff       = {abs(fd_scipy - fd_eigh) / fd_scipy:.3e}")
