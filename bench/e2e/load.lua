-- wrk script: POSTs realistic /predict bodies, one JSON body per line of the file given after
-- `--`, in turn, or GETs the URL when no file is given; prints one JSON line with the totals and
-- latency percentiles (microseconds).
local bodies = {}
local next_body = 1

function init(args)
  if args[1] == nil then return end
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  next_body = math.random(#bodies)
end

function request()
  if #bodies == 0 then return wrk.format("GET") end
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
