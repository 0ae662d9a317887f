#!/usr/bin/env python3
"""Generate reference noise multipliers for epsvec's accountant tests.

Independent of the Rust code: every sigma here comes from Google's
`dp-accounting` (PyPI package dp-accounting 0.6.0), PLD accountant
(connect-the-dots, pessimistic estimate), for ONE release of the Gaussian
mechanism with sensitivity 1, optionally Poisson-subsampled with rate q:

    sigma_ref(eps, delta, q) = the sigma with  PLD.get_delta(eps) = delta,

found by Brent's method on log(delta_PLD) vs log(sigma) at
value_discretization_interval = 1e-3, then polished by two secant steps at
value_discretization_interval = VDI_FINE (default 1e-4).  The RDP accountant
gives only the starting bracket and a looseness sanity column (RDP sigma >=
PLD sigma); it is never the reference.

Usage:  python tests/data/make_accounting_reference.py [--fine 1e-4] [--out reference_table.rs.txt]
Writes Rust array literals of (eps, delta, q, sigma_pld) rows: add/remove
(ADD_OR_REMOVE_ONE) and substitution (REPLACE_ONE), to paste into the tests of
src/privacy/accounting.rs (between REFERENCE_TABLE_BEGIN/END). The full grid took 26
minutes on one busy core (the PLD builds at 1e-4 dominate). Needs
dp-accounting (pip install dp-accounting; pulls scipy, numpy, absl, dm-tree).
"""
import argparse
import math
import sys
import time
import warnings

warnings.filterwarnings("ignore")

from dp_accounting import dp_event, pld, rdp
from dp_accounting.privacy_accountant import NeighboringRelation as NR
from scipy.optimize import brentq


def _event(sigma, q):
    ev = dp_event.GaussianDpEvent(sigma)
    return ev if q >= 1.0 else dp_event.PoissonSampledDpEvent(q, ev)


def pld_delta(eps, sigma, q, vdi, rel=NR.ADD_OR_REMOVE_ONE):
    acc = pld.PLDAccountant(neighboring_relation=rel, value_discretization_interval=vdi)
    acc.compose(_event(sigma, q))
    return acc.get_delta(eps)


# Integer orders only: fractional orders are slow to converge at large q.
RDP_ORDERS = list(range(2, 65)) + [80, 96, 128, 192, 256, 512, 1024]


def rdp_sigma(eps, delta, q):
    """Sigma from the (looser) RDP accountant, by bisection in log sigma."""
    def eps_of(sigma):
        acc = rdp.RdpAccountant(orders=RDP_ORDERS)
        acc.compose(_event(sigma, q))
        return acc.get_epsilon(delta)
    lo, hi = 1e-3, 1e4
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if eps_of(mid) > eps:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-5:
            break
    return hi


def pld_sigma(eps, delta, q, start, vdi_coarse=1e-3, vdi_fine=1e-4, rel=NR.ADD_OR_REMOVE_ONE):
    """Root of log pld_delta(eps; sigma) = log delta, bracketed below `start`."""
    f = lambda ls, vdi: math.log(max(pld_delta(eps, math.exp(ls), q, vdi, rel), 1e-300)) - math.log(delta)
    hi = math.log(start)
    fh = f(hi, vdi_coarse)
    while fh > 0:                      # start not above the root: move up
        hi += 0.5
        fh = f(hi, vdi_coarse)
    lo = hi - 0.3
    while f(lo, vdi_coarse) < 0:       # move down until delta(lo) > target
        lo -= 0.3
    ls = brentq(lambda x: f(x, vdi_coarse), lo, hi, xtol=1e-12, rtol=1e-12)
    coarse = math.exp(ls)
    if vdi_fine is None or vdi_fine >= vdi_coarse:
        return coarse, coarse
    # two secant steps at the fine discretisation
    x0, x1 = ls, ls + 1e-4
    f0, f1 = f(x0, vdi_fine), f(x1, vdi_fine)
    for _ in range(2):
        if f1 == f0:
            break
        x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
        x0, f0, x1 = x1, f1, x2
        f1 = f(x1, vdi_fine)
    return math.exp(x1), coarse


EPS = [0.1, 0.5, 1.0, 2.0, 4.9, 10.0, 20.0]
EPS_SUBSAMPLED = [0.1, 1.0, 4.9, 20.0]  # q < 1 rows (PLD builds are slower)
DELTA = [1e-8, 1e-5, 1e-3]
Q = [1.0, 0.5, 0.1, 0.01, 500.0 / 280000.0, 1e-3, 1e-4]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fine", type=float, default=1e-4)
    ap.add_argument("--out", default="reference_table.rs.txt")
    ap.add_argument("--quick", action="store_true", help="small grid")
    a = ap.parse_args()
    eps_grid, delta_grid, q_grid = (EPS, DELTA, Q) if not a.quick else ([1.0], [1e-5], [1.0, 0.01])
    rows, sub_rows = [], []
    t0 = time.time()
    for q in q_grid:
        for delta in delta_grid:
            if delta >= q:
                continue  # no noise needed at all; the accountant refuses these
            for eps in eps_grid:
                if q < 1 and not a.quick and eps not in EPS_SUBSAMPLED:
                    continue
                t = time.time()
                sr = rdp_sigma(eps, delta, q)
                s, sc = pld_sigma(eps, delta, q, sr, vdi_fine=a.fine)
                rows.append((eps, delta, q, s))
                print(f"# eps={eps} delta={delta:g} q={q:.6g}: pld={s:.12g} coarse={sc:.12g} "
                      f"(fine/coarse-1={s/sc-1:.1e}) rdp={sr:.8g} (rdp/pld={sr/s:.4f}) {time.time()-t:.1f}s",
                      file=sys.stderr, flush=True)
    # substitution: q = 1 is sensitivity 2; q < 1 rows are dp-accounting's REPLACE_ONE
    # pair (1-q)N(0)+qN(1) vs (1-q)N(0)+qN(-1), which accounting.rs proves is the worst case.
    for (eps, delta, q) in [(0.5, 1e-5, 1.0), (4.9, 9e-6, 1.0), (20.0, 1e-8, 1.0),
                            (4.9, 9e-6, 500.0 / 280000.0), (1.0, 1e-5, 0.01), (1.0, 1e-5, 0.3),
                            (0.1, 1e-6, 1e-3), (10.0, 1e-8, 0.1)]:
        if a.quick and q < 1:
            continue
        sr = 2.0 * rdp_sigma(eps, delta, q) + 1.0
        s, _ = pld_sigma(eps, delta, q, sr, vdi_fine=a.fine, rel=NR.REPLACE_ONE)
        sub_rows.append((eps, delta, q, s))
        print(f"# substitution eps={eps} delta={delta:g} q={q:.6g}: pld={s:.12g}", file=sys.stderr, flush=True)
    with open(a.out, "w") as fh:
        fh.write(f"// generated by make_reference.py (dp-accounting PLD, vdi {a.fine:g}) in {time.time()-t0:.0f}s\n")
        fh.write("// (eps, delta, q, sigma) for AddRemove\n")
        fh.write("const REF_ADD_REMOVE: &[(f64, f64, f64, f64)] = &[\n")
        for r in rows:
            fh.write(f"    ({r[0]!r}, {r[1]!r}, {r[2]!r}, {r[3]!r}),\n")
        fh.write("];\n// (eps, delta, q, sigma) dp-accounting REPLACE_ONE\n")
        fh.write("const REF_REPLACE_ONE: &[(f64, f64, f64, f64)] = &[\n")
        for r in sub_rows:
            fh.write(f"    ({r[0]!r}, {r[1]!r}, {r[2]!r}, {r[3]!r}),\n")
        fh.write("];\n")
    print(f"wrote {a.out}: {len(rows)} + {len(sub_rows)} rows in {time.time()-t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
