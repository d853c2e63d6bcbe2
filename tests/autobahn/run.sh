#!/usr/bin/env bash
# run.sh URL [REPORT_DIR]
#
# Runs Autobahn|Testsuite's fuzzing client (`wstest -m fuzzingclient`) against the WebSocket
# echo endpoint at URL (e.g. ws://127.0.0.1:8000/), then summarizes its report.
#
# Cases: 1.* to 7.*, 9.* and 10.*; 12.* and 13.* (permessage-deflate) are excluded, as tine does
# not negotiate compression. The testee must echo every message (bench/apps/ws_echo.py) and
# take messages of 16 MiB (9.*).
#
# Verdict: one line per case whose behavior is not OK (with its behaviorClose), then the count
# of cases per behavior (summary.py). The exit status is 1 if any case's behavior is FAILED, 0
# otherwise: NON-STRICT, INFORMATIONAL and UNIMPLEMENTED are reported but do not fail the run.
# It is 124 if wstest did not end within AUTOBAHN_TIMEOUT, 2 on bad usage or when there is no
# verdict (no case ran: the connection was refused, say).
#
# The report (index.json, index.html and a page per case) goes to REPORT_DIR (default
# target/autobahn-report), with the spec (fuzzingclient.json) and wstest's output (wstest.log).
# wstest runs under Python 2.7 from a private directory, target/autobahn-venv, made by setup-env
# from requirements-py27.txt and reused while those pins hold.
#
# Environment (all optional):
#   AUTOBAHN_CASES    comma-separated case patterns to run (default: the set above), e.g. "9.*"
#   AUTOBAHN_EXCLUDE  comma-separated case patterns to leave out (default: "12.*,13.*")
#   AUTOBAHN_TIMEOUT  seconds the whole run may take (default: 1800)
#   AUTOBAHN_PYTHON27 the Python 2.7 interpreter (default: pyenv's 2.7.18, else python2.7)
#   AUTOBAHN_ENV      where wstest is installed (default: target/autobahn-venv)
#   AUTOBAHN_AGENT    the name the report gives the testee (default: testee)
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || $1 == -h || $1 == --help ]]; then
    echo "usage: $0 URL [REPORT_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
url=$1
report_dir=${2:-$root/target/autobahn-report}
cases=${AUTOBAHN_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}
exclude=${AUTOBAHN_EXCLUDE:-12.*,13.*}
timeout=${AUTOBAHN_TIMEOUT:-1800}
python27=${AUTOBAHN_PYTHON27:-}
if [[ -z $python27 ]]; then
    python27=$HOME/.pyenv/versions/2.7.18/bin/python2.7
    [[ -x $python27 ]] || python27=python2.7
fi
env_dir=${AUTOBAHN_ENV:-$root/target/autobahn-venv}
agent=${AUTOBAHN_AGENT:-testee}

if [[ $url != ws://* && $url != wss://* ]]; then
    echo "run.sh: URL must be ws:// or wss://, not $url" >&2
    exit 2
fi

"$here/setup-env" "$env_dir" "$python27" "$here/requirements-py27.txt"

mkdir -p "$report_dir"
report_dir=$(cd "$report_dir" && pwd)
# A report left by an earlier run must not pass for this one's.
rm -f "$report_dir/index.json" "$report_dir/index.html"
spec=$report_dir/fuzzingclient.json
log=$report_dir/wstest.log
python3 - "$spec" "$url" "$report_dir" "$agent" "$cases" "$exclude" <<'EOF'
import json, sys

path, url, outdir, agent, cases, exclude = sys.argv[1:]
split = lambda patterns: [p.strip() for p in patterns.split(",") if p.strip()]
spec = {
    "outdir": outdir,
    "servers": [{"agent": agent, "url": url}],
    "cases": split(cases),
    "exclude-cases": split(exclude),
    "exclude-agent-cases": {},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
EOF

echo "run.sh: wstest -m fuzzingclient against $url (cases $cases; excluded $exclude;" \
    "at most ${timeout} s)" >&2
started=$SECONDS
status=0
# wstest's own launcher imports from sys.path alone; addsitedir also reads the .pth files of
# the --target directory (zope's namespace package needs them).
(cd "$report_dir" && timeout --kill-after=15 "$timeout" "$python27" -c '
import site, sys
site.addsitedir(sys.argv[1])
sys.argv = ["wstest"] + sys.argv[2:]
from autobahntestsuite.wstest import run
run()
' "$env_dir" -m fuzzingclient -s "$spec" >"$log" 2>&1) || status=$?
elapsed=$((SECONDS - started))
if [[ $status -eq 124 || $status -eq 137 ]]; then
    echo "run.sh: wstest did not finish within ${timeout} s; stopped it; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 124
fi
echo "run.sh: wstest exited with status $status after ${elapsed} s;" \
    "report in $report_dir/index.html" >&2
verdict=0
python3 "$here/summary.py" "$report_dir/index.json" || verdict=$?
if [[ $verdict -eq 2 ]]; then
    # No case ran (the testee refused the connection, say): wstest's log says why.
    echo "run.sh: no verdict; the end of $log:" >&2
    tail -n 20 "$log" >&2
fi
exit "$verdict"
