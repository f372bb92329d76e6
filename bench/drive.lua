-- wrk script of the benchmark: build each request (method, body, a key from a file, rotating),
-- count 2xx answers, and print one JSON line with throughput and latency percentiles.
--   wrk ... -s bench/drive.lua URL -- <keys file or -> <method> <body file or ->
-- Every scenario uses this same script (the free endpoint too, with no key), so wrk spends the
-- same work per request in each and the ratios compare the server alone.
ok = 0
local threads = {}
local keys = {}
local method = "GET"
local body = nil
local index = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  if args[1] and args[1] ~= "-" then
    for line in io.lines(args[1]) do
      if #line > 0 then table.insert(keys, line) end
    end
  end
  if args[2] then method = args[2] end
  if args[3] and args[3] ~= "-" then
    local file = io.open(args[3], "rb")
    body = file:read("*a")
    file:close()
  end
  index = math.random(1, math.max(#keys, 1))
end

function request()
  local headers = {}
  if #keys > 0 then
    index = index % #keys + 1
    headers["X-API-Key"] = keys[index]
  end
  if body then
    headers["Content-Type"] = "application/json"
  end
  return wrk.format(method, nil, headers, body)
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
