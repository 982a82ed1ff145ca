-- wrk script for scripts/bench.sh: counts every response whose status is not WRK_EXPECT
-- (so a lost session that turns 200s into 302s is an error, not a fast row) and prints one
-- machine-readable RESULT line.
local expect = tonumber(os.getenv("WRK_EXPECT") or "200")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, body)
  if status ~= expect then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do
    b = b + (t:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d bad_status=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), b,
    e.connect + e.read + e.write + e.timeout))
  -- The whole latency histogram (µs:count per non-empty bucket), so that bench.sh can compute
  -- percentiles over all the passes of a row rather than pick one pass's.
  local parts = {}
  for i = 1, #latency do
    local v, c = latency(i)
    parts[#parts + 1] = string.format("%d:%d", v, c)
  end
  io.write("HIST " .. table.concat(parts, " ") .. "\n")
end
