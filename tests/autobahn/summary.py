"""Summarizes an Autobahn|Testsuite fuzzing-client report: python3 summary.py INDEX_JSON

Prints one line per case whose `behavior` is not OK (with its `behaviorClose` and the close code
the testee sent), the count of cases per behavior, where the time went (per case group, and the
slowest cases), and a closing `N passed, N failed` line. Exits 1 if any case's behavior is
FAILED, 0 otherwise (NON-STRICT, INFORMATIONAL and UNIMPLEMENTED do not fail), 2 if the report
cannot be read. Standard library only.
"""

import collections
import json
import sys

FAILED = "FAILED"
SLOWEST = 5


def case_key(case_id):
    """Sorts "9.10.2" after "9.2.1": numerically, part by part."""
    return tuple(int(part) if part.isdigit() else part for part in case_id.split("."))


def summarize(index, out):
    """Writes the summary of a parsed index.json to `out`; returns the number of FAILED cases."""
    failed = 0
    for agent, cases in sorted(index.items()):
        ids = sorted(cases, key=case_key)
        behaviors = collections.Counter(cases[i]["behavior"] for i in ids)
        closes = collections.Counter(cases[i]["behaviorClose"] for i in ids)
        print(f"== {agent}: {len(ids)} cases", file=out)
        for i in ids:
            case = cases[i]
            if case["behavior"] != "OK":
                print(
                    f"{i:<10} {case['behavior']:<14} close {case['behaviorClose']:<14}"
                    f" code {case.get('remoteCloseCode')}",
                    file=out,
                )
        print("behavior:      " + counts(behaviors), file=out)
        print("behaviorClose: " + counts(closes), file=out)

        durations = {i: cases[i].get("duration") or 0 for i in ids}
        groups = collections.Counter()
        for i, ms in durations.items():
            groups[i.split(".")[0]] += ms
        total = sum(durations.values())
        per_group = sorted(groups.items(), key=lambda item: int(item[0]))
        print(
            f"time: {total / 1000:.1f} s in cases; per group: "
            + ", ".join(f"{g}.* {ms / 1000:.1f} s" for g, ms in per_group),
            file=out,
        )
        slowest = sorted(ids, key=lambda i: durations[i], reverse=True)[:SLOWEST]
        print(
            "slowest: " + ", ".join(f"{i} {durations[i] / 1000:.1f} s" for i in slowest),
            file=out,
        )
        failed += behaviors[FAILED]
    total_cases = sum(len(cases) for cases in index.values())
    print(f"autobahn: {total_cases - failed} passed, {failed} failed", file=out)
    return failed


def counts(counter):
    """"OK 290, NON-STRICT 3": the most frequent first."""
    return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "none"


def main(argv):
    if len(argv) != 2:
        print("usage: summary.py INDEX_JSON", file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as f:
            index = json.load(f)
    except (OSError, ValueError) as err:
        print(f"summary.py: cannot read {argv[1]}: {err}", file=sys.stderr)
        return 2
    if not index or not any(index.values()):
        print(f"summary.py: {argv[1]} holds no case", file=sys.stderr)
        return 2
    try:
        return 1 if summarize(index, sys.stdout) else 0
    except (AttributeError, KeyError, TypeError) as err:
        print(f"summary.py: {argv[1]} is not a fuzzing-client index: {err!r}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
