-- wrk script: count 2xx answers and print one JSON line with throughput and latency percentiles.
ok = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local total_ok = 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
  end
  io.write(string.format(
    '{"rps": %.1f, "p50": %.3f, "p99": %.3f, "p999": %.3f, "requests": %d, "errors": %d, "status_2xx": %d}\n',
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
      + summary.errors.timeout,
    total_ok))
end
