-- wrk script of bench/bench_service.py. Environment:
--   WRK_MODE  "get" (GET <path-prefix><random id of WRK_IDS>), "post" (a new granted event) or
--             "batch" ({"events": [WRK_BATCH new granted events]})
--   WRK_IDS   how many ids C00000000.. exist; WRK_TAG distinct per run (event ids stay new)
--   WRK_TOKEN bearer token (post); WRK_DELAY_MS pause before each request (0: closed loop)
-- Prints one JSON line at the end: requests, seconds, non-2xx/3xx, socket errors, p50/p99 (ms).

local mode = os.getenv("WRK_MODE") or "get"
local ids = tonumber(os.getenv("WRK_IDS") or "1")
local tag = os.getenv("WRK_TAG") or "t"
local token = os.getenv("WRK_TOKEN") or ""
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0")
local size = tonumber(os.getenv("WRK_BATCH") or "1")
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(tid * 7919 + os.time())
end

function delay()
  return pause
end

local granted = '{"event_id":"E%s","type":"certification.granted",' ..
  '"occurred_at":"2026-11-01T12:00:00+00:00","certification_id":"N%s",' ..
  '"data":{"member":{"member_id":"M%s","first_name":"Pat","last_name":"Bench",' ..
  '"email":"%s@example.org"},"credential":"RMA","certified_on":"2026-11-01"}}'

local function new_event()
  counter = counter + 1
  local key = tag .. "-" .. tid .. "-" .. counter
  return string.format(granted, key, key, key, key)
end

function request()
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  if mode == "post" then
    return wrk.format("POST", wrk.path, headers, new_event())
  elseif mode == "batch" then
    local events = {}
    for i = 1, size do
      events[i] = new_event()
    end
    return wrk.format("POST", wrk.path, headers, '{"events":[' .. table.concat(events, ",") .. ']}')
  end
  return wrk.format("GET", wrk.path .. string.format("C%08d", math.random(0, ids - 1)))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
