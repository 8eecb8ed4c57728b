"""The long fuzzing run of the file readers, by hand (the CI test runs a bounded number of cases).

    PYTHONPATH=src python tools/fuzz_loaders.py --minutes 8            # batches until the time is up
    PYTHONPATH=src python tools/fuzz_loaders.py --cases 500 --start 0  # 500 seeds per target

Cases, mutations and verdicts are those of ``tests/_fuzz.py`` (seeds start where CI's end, at
1000, unless ``--start`` says otherwise). Prints the outcomes per target and every finding (any
outcome other than ``loaded`` or ``refused``), and writes them as JSON with ``--out``. Exit
status 1 when there is a finding.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _fuzz  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=None, help="run batches until this many minutes have passed")
    ap.add_argument("--cases", type=int, default=None, help="cases per target (instead of --minutes)")
    ap.add_argument("--start", type=int, default=1000, help="first seed (CI uses 0..39)")
    ap.add_argument("--batch", type=int, default=50, help="seeds per target in one worker batch")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a case may take before it is a hang")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if (args.minutes is None) == (args.cases is None):
        ap.error("give exactly one of --minutes and --cases")
    t0 = time.monotonic()
    results, seed = [], args.start
    stop = args.start + args.cases if args.cases is not None else None
    with tempfile.TemporaryDirectory(prefix="convlstm-fuzz-") as tmp:
        while True:
            if stop is not None and seed >= stop:
                break
            if args.minutes is not None and time.monotonic() - t0 > 60 * args.minutes:
                break
            end = seed + args.batch if stop is None else min(seed + args.batch, stop)
            cases = [(t, s) for s in range(seed, end) for t in _fuzz.TARGETS]
            results += _fuzz.run_campaign(cases, Path(tmp) / f"batch{seed}", case_timeout=args.timeout)
            seed = end
            print(f"{len(results)} cases, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    counts = _fuzz.summary(results)
    findings = [r for r in results if r["outcome"] not in ("loaded", "refused")]
    outcomes = sorted({o for c in counts.values() for o in c})
    print(f"{len(results)} cases (seeds {args.start}..{seed - 1} per target) in {time.monotonic() - t0:.0f} s")
    print(f"{'target':<20}" + "".join(f"{o:>10}" for o in outcomes))
    for target, c in counts.items():
        print(f"{target:<20}" + "".join(f"{c.get(o, 0):>10}" for o in outcomes))
    for r in findings:
        print(f"FINDING {r['target']} seed {r['seed']}: {r['outcome']}: {r['detail']}")
    if args.out is not None:
        args.out.write_text(json.dumps({"counts": counts, "findings": findings, "cases": len(results)}, indent=1))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
