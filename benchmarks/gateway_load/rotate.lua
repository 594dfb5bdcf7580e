-- wrk script: rotate over a list of request targets, one signed link a line, so that each
-- request carries its own valid token. Used by benchmarks/gateway_load/measure.py as
--
--   wrk -t1 -cN -dS -s rotate.lua http://127.0.0.1:PORT -- TARGETS_FILE OFFSET MEAN_DELAY_MS
--
-- OFFSET: where in the list this run starts (runs continue where the last one stopped).
-- MEAN_DELAY_MS: 0 for a closed loop; otherwise each connection waits a random 0..2x this
-- many milliseconds before each request (a paced load, spread so connections do not beat
-- in step). done() prints one line "WRK_JSON {...}" with the run's counters and latency
-- percentiles in microseconds, for the harness to read.

local requests = {}
local next_index = 1

function init(args)
   for target in io.lines(args[1]) do
      requests[#requests + 1] = wrk.format(nil, target)
   end
   if #requests == 0 then
      error("no request targets in " .. args[1])
   end
   next_index = (tonumber(args[2]) or 0) % #requests + 1
   local mean = math.floor(tonumber(args[3]) or 0)
   if mean > 0 then
      math.randomseed(os.time())
      function delay()
         return math.random(0, 2 * mean)
      end
   end
end

function request()
   local r = requests[next_index]
   next_index = next_index % #requests + 1
   return r
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "connect": %d, "read": %d, '
         .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
      summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
