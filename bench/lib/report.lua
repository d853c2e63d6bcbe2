-- wrk reporting hook for bench/run.sh: after the run, prints one machine-readable line with the
-- request count, the run's length, p50/p99 latency and the error counters. wrk's own report is
-- printed as usual above it.
--
-- Defines only done(), so wrk keeps its fast path (no per-response Lua call).

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
      "connect=%d read=%d write=%d timeout=%d status=%d\n",
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.timeout, e.status))
end
