"""Tests of summary.py: python3 -m unittest discover -s tests/autobahn -p 'test_*.py'"""

import contextlib
import io
import json
import os
import tempfile
import unittest

import summary


def case(behavior, close="OK", code=1000, duration=1):
    """One entry of a fuzzing-client index.json."""
    return {
        "behavior": behavior,
        "behaviorClose": close,
        "duration": duration,
        "remoteCloseCode": code,
        "reportfile": "x.json",
    }


class Summary(unittest.TestCase):
    def run_on(self, index):
        out = io.StringIO()
        failed = summary.summarize(index, out)
        return failed, out.getvalue().splitlines()

    def test_only_failed_fails_and_every_non_ok_case_is_listed(self):
        failed, lines = self.run_on(
            {
                "testee": {
                    "1.1.1": case("OK"),
                    "3.2": case("NON-STRICT", code=1002),
                    "7.13.1": case("INFORMATIONAL", close="INFORMATIONAL"),
                    "9.3.1": case("FAILED", close="FAILED", code=1009),
                    "12.1.1": case("UNIMPLEMENTED"),
                }
            }
        )
        self.assertEqual(failed, 1)
        listed = [line.split()[0] for line in lines if line[:1].isdigit()]
        self.assertEqual(listed, ["3.2", "7.13.1", "9.3.1", "12.1.1"])
        self.assertIn("9.3.1      FAILED         close FAILED         code 1009", lines)
        self.assertIn("autobahn: 4 passed, 1 failed", lines)

    def test_non_strict_informational_and_unimplemented_pass(self):
        failed, lines = self.run_on(
            {
                "testee": {
                    "4.1.3": case("NON-STRICT"),
                    "7.1.6": case("INFORMATIONAL"),
                    "13.1.1": case("UNIMPLEMENTED"),
                }
            }
        )
        self.assertEqual(failed, 0)
        self.assertEqual(lines[-1], "autobahn: 3 passed, 0 failed")

    def test_cases_sort_numerically_and_time_adds_up_per_group(self):
        _, lines = self.run_on(
            {
                "testee": {
                    "9.10.1": case("NON-STRICT", duration=3000),
                    "9.2.1": case("NON-STRICT", duration=1000),
                    "10.1.1": case("NON-STRICT", duration=500),
                }
            }
        )
        listed = [line.split()[0] for line in lines if line[:1].isdigit()]
        self.assertEqual(listed, ["9.2.1", "9.10.1", "10.1.1"])
        self.assertIn("time: 4.5 s in cases; per group: 9.* 4.0 s, 10.* 0.5 s", lines)
        self.assertIn("slowest: 9.10.1 3.0 s, 9.2.1 1.0 s, 10.1.1 0.5 s", lines)

    def test_behavior_counts_most_frequent_first(self):
        _, lines = self.run_on(
            {"testee": {"1.1.1": case("OK"), "1.1.2": case("OK"), "3.2": case("NON-STRICT")}}
        )
        self.assertIn("behavior:      OK 2, NON-STRICT 1", lines)


class Main(unittest.TestCase):
    def exit_status(self, content):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.json")
            if content is not None:
                with open(path, "w") as f:
                    f.write(content)
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                return summary.main(["summary.py", path])

    def test_exit_status_follows_the_verdict(self):
        ok = json.dumps({"testee": {"1.1.1": case("OK")}})
        failed = json.dumps({"testee": {"1.1.1": case("FAILED")}})
        self.assertEqual(self.exit_status(ok), 0)
        self.assertEqual(self.exit_status(failed), 1)

    def test_a_report_without_cases_is_no_verdict(self):
        self.assertEqual(self.exit_status(None), 2)
        self.assertEqual(self.exit_status("{}"), 2)
        self.assertEqual(self.exit_status('{"testee": {}}'), 2)
        self.assertEqual(self.exit_status("not json"), 2)
        self.assertEqual(self.exit_status('{"testee": {"1.1.1": {"duration": 1}}}'), 2)


if __name__ == "__main__":
    unittest.main()
