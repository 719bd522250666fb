#!/usr/bin/env python3
"""Tests of bench/run's own logic: section bounds, baseline ranges, spreads and the
generated reading. `bench/run --smoke` runs them first (so CI does); alone:
`python3 bench/test_run.py`. Real processes, no load generator, a few seconds."""

import contextlib
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
_loader = importlib.machinery.SourceFileLoader("bench_run", str(HERE / "run"))
_spec = importlib.util.spec_from_loader("bench_run", _loader)
run = importlib.util.module_from_spec(_spec)
_loader.exec_module(run)


def scratch(test):
    """A temporary directory removed when TEST ends."""
    d = Path(tempfile.mkdtemp(prefix="bench-test-"))
    test.addCleanup(shutil.rmtree, d, True)
    return d


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill 0: it is dead once reaped or in state Z.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def raw(values, client="wrk -t2 -c50"):
    """A contender's summary as summary() makes it, from its per-round req/s."""
    return {"req_s": sorted(values)[len(values) // 2], "rounds_of": {"req_s": values},
            "client": client, "client_cores": 0.5, "rounds": len(values)}


META = {"command": "bench/run --test", "started": "s", "finished": "f",
        "load_before": ["0.1", "0.1", "0.1"], "load_after": ["0.2", "0.2", "0.2"],
        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 1, "kernel": "k", "nginx": "n",
                    "wrk": "w", "java": "j", "rustc": "r", "vyx_commit": "c"},
        "clients": {"default": [2, 50]}, "failed_sections": []}


class SectionBounds(unittest.TestCase):
    def setUp(self):
        self.logdir = Path(tempfile.mkdtemp(prefix="bench-test-"))
        self.addCleanup(shutil.rmtree, self.logdir, True)
        self.addCleanup(run.stop_children)

    def test_a_section_past_its_bound_is_killed_recorded_and_the_run_goes_on(self):
        pidfile = self.logdir / "pid"
        started = {}

        def hangs():
            # A child the section starts and would stop at its end, and a command that
            # never returns (as the scale section's loadgen once did).
            started["child"] = run.spawn("server", ["sleep", "300"], self.logdir,
                                         stdout=subprocess.DEVNULL)
            subprocess.run(["sh", "-c", f'echo $$ > {pidfile}; exec sleep 300'], check=True)

        failed = []
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            done = run.run_section("hangs", hangs, 1, failed, self.logdir)
            ran = []
            done_next = run.run_section("next", lambda: ran.append(1), 5, failed,
                                        self.logdir)
        self.assertFalse(done)
        self.assertEqual([f["section"] for f in failed], ["hangs"])
        self.assertIn("SectionTimeout", failed[0]["reason"])
        self.assertIn("bound of 1 s", failed[0]["reason"])
        self.assertIn("section hangs FAILED", out.getvalue())
        self.assertFalse(alive(started["child"].pid), "the section's server was left running")
        self.assertNotIn(started["child"], run.CHILDREN)
        self.assertFalse(alive(int(pidfile.read_text())), "the hung command was left running")
        self.assertTrue(done_next)
        self.assertEqual(ran, [1])
        self.assertEqual(len(failed), 1)

    def test_a_bound_is_not_taken_for_not_yet_by_a_readiness_poll(self):
        # wait_until treats any Exception from its check as "not yet"; the bound must still
        # end the section at once, not when the poll's own 300 s run out.
        failed = []
        t0 = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            # The check is where the poll spends its time, so that is where the bound lands.
            done = run.run_section("polls", lambda: run.wait_until(
                "never", lambda: time.sleep(0.5), 30), 1, failed, self.logdir)
        self.assertFalse(done)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("SectionTimeout", failed[0]["reason"])

    def test_a_bounded_wrk_like_command_is_killed_with_its_section(self):
        pidfile = self.logdir / "pid"
        failed = []
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            run.run_section("counted", lambda: run.run_counted(
                ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"]), 1, failed, self.logdir)
        self.assertEqual(len(failed), 1)
        self.assertFalse(alive(int(pidfile.read_text())))

    def test_a_failing_section_is_recorded_with_its_reason(self):
        failed = []

        def breaks():
            raise RuntimeError("nginx exited (1) before printing 'listening'\nmore")

        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            self.assertFalse(run.run_section("breaks", breaks, 5, failed, self.logdir))
        self.assertEqual(failed, [{"section": "breaks", "reason":
                                   "RuntimeError: nginx exited (1) before printing 'listening'"}])


class Baselines(unittest.TestCase):
    RANGES = {"r req/s vs nginx": {"req_s": [100, 200], "client": "wrk -t2 -c50"}}

    def setUp(self):
        saved = dict(run.RANGES)
        run.RANGES.clear()
        run.RANGES.update(self.RANGES)
        self.addCleanup(lambda: (run.RANGES.clear(), run.RANGES.update(saved)))
        run.ROWS.clear()
        self.addCleanup(run.ROWS.clear)

    def record(self, reference):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            run.row("r req/s vs nginx", "vyx", "nginx", 1.0, None, True, raw([60, 50, 55]),
                    reference, metric="req_s")
        return out.getvalue()

    def report(self):
        d = scratch(self)
        run.write_report(d, run.Settings(smoke=True), META)
        return (d / "RESULTS.md").read_text()

    def test_a_baseline_below_its_range_is_flagged_in_the_output_and_results_md(self):
        printed = self.record(raw([50, 60, 55]))
        self.assertIn("BASELINE r req/s vs nginx: reference req_s 55 below its recorded "
                      "range 100-200", printed)
        md = self.report()
        self.assertIn("| **out of range** (55) |", md)
        self.assertIn("**Baselines out of their recorded range**", md)

    def test_a_baseline_within_its_range_is_not_flagged(self):
        self.assertNotIn("BASELINE", self.record(raw([150, 160, 140])))
        md = self.report()
        self.assertIn("| in range |", md)
        self.assertNotIn("out of range", md)

    def test_a_baseline_measured_with_another_client_is_not_checked(self):
        self.assertNotIn("BASELINE", self.record(raw([10, 10, 10], client="wrk -t1 -c16")))
        self.assertEqual(run.ROWS[0]["baseline"]["unchecked"],
                         "range recorded with wrk -t2 -c50, measured with wrk -t1 -c16")
        self.assertIn("| not checked |", self.report())

    def test_a_row_without_a_range_is_not_checked(self):
        with contextlib.redirect_stdout(io.StringIO()):
            run.row("other", "vyx", "nginx", 1.0, None, True, raw([1]), raw([1]),
                    metric="req_s")
        self.assertIsNone(run.ROWS[0]["baseline"])

    def test_the_committed_ranges_are_well_formed(self):
        cpus = json.loads(run.BASELINES.read_text())["machines"]
        self.assertTrue(cpus)
        for cpu in cpus:
            for name, entry in run.load_baselines(cpu=cpu).items():
                metrics = [k for k in entry if k in run.UNIT]
                self.assertEqual(len(metrics), 1, name)
                lo, hi = entry[metrics[0]]
                self.assertLess(lo, hi, name)
                self.assertTrue(entry.get("recorded"), f"{name}: no recorded figures")

    def test_ranges_are_those_of_the_machine_s_own_cpu(self):
        path = scratch(self) / "baselines.json"
        path.write_text(json.dumps({"machines": {
            "Fast CPU": {"ranges": {"r req/s vs nginx": {"req_s": [100, 200]}}},
            "Slow CPU": {"ranges": {"r req/s vs nginx": {"req_s": [50, 90]}}}}}))
        self.assertEqual(run.load_baselines(path, cpu="Slow CPU")["r req/s vs nginx"]["req_s"],
                         [50, 90])
        self.assertEqual(run.load_baselines(path, cpu="Other CPU"), {})

    def test_a_cpu_s_ranges_are_recorded_from_two_runs_widened_by_a_fifth(self):
        d = scratch(self)

        def results(name, started, nginx, off):
            rows = [
                {"row": "r req/s vs nginx", "reference": "nginx", "metric": "req_s",
                 "reference_raw": {"req_s": nginx, "client": "wrk -t2 -c50"}},
                # vyx's own reference and latency rows get no range.
                {"row": "log on vs off", "reference": "vyx, access log off", "metric": "req_s",
                 "reference_raw": {"req_s": off}},
                {"row": "p99", "reference": "nginx", "metric": "p99_ms",
                 "reference_raw": {"p99_ms": 1.0}},
            ]
            meta = {"started": started, "machine": {"cpu": "Some CPU", "vyx_commit": "abc"}}
            (d / name).write_text(json.dumps({"meta": meta, "rows": rows}))
            return d / name

        path = d / "baselines.json"
        path.write_text(json.dumps({"about": ["kept"], "machines": {"Other": {"ranges": {}}}}))
        runs = [results("a.json", "10:00", 1000, 50), results("b.json", "10:30", 1100, 60)]
        self.assertEqual(run.record_baselines(runs, path), "Some CPU")
        doc = json.loads(path.read_text())
        self.assertEqual(doc["about"], ["kept"])
        self.assertIn("Other", doc["machines"])
        ranges = run.load_baselines(path, cpu="Some CPU")
        self.assertEqual(list(ranges), ["r req/s vs nginx"])
        self.assertEqual(ranges["r req/s vs nginx"]["req_s"], [800, 1320])
        self.assertEqual(ranges["r req/s vs nginx"]["client"], "wrk -t2 -c50")
        self.assertEqual(sorted(ranges["r req/s vs nginx"]["recorded"].values()), [1000, 1100])
        with self.assertRaises(SystemExit):
            run.record_baselines(runs[:1], path)


class RetryRow(unittest.TestCase):
    def test_retries_are_summed_over_the_series_with_the_labels_asked_for(self):
        text = "\n".join([
            "# TYPE vyx_retries counter",
            'vyx_retries_total{reason="connection_lost",outcome="answered"} 53',
            'vyx_retries_total{reason="connection_lost",outcome="failed"} 2',
            'vyx_retries_total{reason="refused",outcome="answered"} 7',
            'vyx_retries_created{reason="refused",outcome="answered"} 1.7e9',
            "vyx_retries_totalx 99",
        ])
        self.assertEqual(run.counter_sum(text, "vyx_retries_total", reason="connection_lost"), 55)
        self.assertEqual(run.counter_sum(text, "vyx_retries_total", reason="connection_lost",
                                         outcome="answered"), 53)
        self.assertEqual(run.counter_sum(text, "vyx_retries_total"), 62)


class Spreads(unittest.TestCase):
    def setUp(self):
        run.ROWS.clear()
        self.addCleanup(run.ROWS.clear)

    def test_ratio_is_of_medians_and_its_spread_of_paired_rounds_and_the_reading_says_so(self):
        with contextlib.redirect_stdout(io.StringIO()):
            summaries = {n: run.summary([{"req_s": v, "peak_rss_kib": 1} for v in vs],
                                        ["req_s"], n)
                         for n, vs in (("vyx", [120, 100, 90]), ("nginx", [100, 100, 60]))}
            run.row("x req/s vs nginx", "vyx", "nginx",
                    run.ratio(summaries["vyx"]["req_s"], summaries["nginx"]["req_s"]), 1.0,
                    True, summaries["vyx"], summaries["nginx"], metric="req_s")
        r = run.ROWS[0]
        self.assertEqual(r["ratio"], 1.0)  # median 100 / median 100
        self.assertEqual(r["ratio_rounds"], [1.2, 1.0, 1.5])
        self.assertEqual(run.spread(r["contender_raw"], "req_s"), [90, 100, 120])
        text = "\n".join(run.reading(run.ROWS, META))
        self.assertIn("vyx 100 req/s (90–120) against nginx 100 (60–100), median of 3 "
                      "rounds: 1.00 ×, per round 1.00–1.50; target >= 1.0, met", text)

    def test_the_smoke_check_fails_on_errors_in_any_round_not_only_the_median(self):
        with contextlib.redirect_stdout(io.StringIO()):
            vyx = run.summary([{"req_s": 10, "non_2xx": n, "peak_rss_kib": 1} for n in (0, 0, 4)],
                              ["req_s", "non_2xx"], "vyx")
            ref = run.summary([{"req_s": 10, "non_2xx": 0, "peak_rss_kib": 1}] * 3,
                              ["req_s", "non_2xx"], "nginx")
            run.row("access-log-json req/s, on vs off", "vyx", "nginx", 1.0, None, True, vyx,
                    ref, metric="req_s")
        self.assertEqual(vyx["non_2xx"], 0)  # the median hides the third round
        d = scratch(self)
        run.write_report(d, run.Settings(smoke=True), META)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertFalse(run.check_smoke(d, ["access-log"]))
        self.assertIn("contender_raw had non_2xx [0, 0, 4]", out.getvalue())

    def test_the_reading_gives_each_proxys_cpu_per_request(self):
        with contextlib.redirect_stdout(io.StringIO()):
            vyx = run.summary([{"req_s": 10, "proxy_cpu_us_per_req": u, "peak_rss_kib": 1}
                               for u in (20.0, 22.0, 30.0)], ["req_s"], "vyx")
            ref = run.summary([{"req_s": 10, "peak_rss_kib": 1}] * 3, ["req_s"], "nginx")
            run.row("y req/s vs nginx", "vyx", "nginx", 1.0, None, True, vyx, ref,
                    metric="req_s")
        text = "\n".join(run.reading(run.ROWS, META))
        self.assertIn("proxy CPU per request (median): vyx 22 µs", text)
        self.assertNotIn("nginx 0 µs", text)

    def test_wrk_at_its_thread_count_of_cores_is_said_to_be_the_limit(self):
        self.assertTrue(run.client_bound({"client": "wrk -t1 -c50", "client_cores": 0.97}))
        self.assertFalse(run.client_bound({"client": "wrk -t2 -c50", "client_cores": 1.2}))
        self.assertFalse(run.client_bound({}))


if __name__ == "__main__":
    unittest.main(verbosity=1)
