-- wrk script for benches/serve_load.rs --wrk: each request asks for the
-- top 10 of a random dataset user (raw ids, one per line, in the file named
-- by $HSUGA_WRK_USERS), and `done` prints one machine-readable line that
-- the bench parses (latencies in microseconds; errors are failed
-- connections, reads, writes, timeouts and non-2xx/3xx answers).
local ids = {}
for line in io.lines(os.getenv("HSUGA_WRK_USERS")) do
    if line ~= "" then ids[#ids + 1] = line end
end
math.randomseed(42)

request = function()
    local u = ids[math.random(#ids)]
    return wrk.format("GET", "/v1/users/" .. u .. "/recommendations?k=10")
end

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "hsuga-wrk requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d errors=%d\n",
        summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(95), latency:percentile(99),
        e.connect + e.read + e.write + e.timeout + e.status))
end
