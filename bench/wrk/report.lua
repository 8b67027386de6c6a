-- Shared by the wrk scripts: seeds each thread's generator differently and prints one JSON line
-- (prefixed "RESULT ") that bench/run parses. Latencies in microseconds.

local report = {}

function report.seed()
  -- Each wrk thread has its own Lua state; the address of a fresh table differs per state.
  local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + addr % 1000003)
end

function report.read_lines(path)
  local values = {}
  for line in io.lines(path) do
    if #line > 0 then values[#values + 1] = line end
  end
  if #values == 0 then error("no values in " .. path) end
  return values
end

function report.done(summary, latency, extra)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f%s}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, extra or ""))
end

return report
